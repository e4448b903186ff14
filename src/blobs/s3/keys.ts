/**
 * Object keys as ATCR's hold lays them out, so a hold can be pointed at an existing ATCR bucket:
 * `<prefix>blobs/sha256/<first 2 hex>/<hex>/data`. The prefix is empty or ends in `/`.
 */
export const blobKey = (prefix: string, hex: string): string =>
  `${prefix}blobs/sha256/${hex.slice(0, 2)}/${hex}/data`

/** Where the hold's own unfinished uploads are assembled; never served, never shared. */
export const uploadsPrefix = (prefix: string): string => `${prefix}uploads/`

export const uploadKey = (prefix: string, id: string): string =>
  `${uploadsPrefix(prefix)}${id}/data`

/** The upload id in a key `uploadKey` made, or undefined for any other key. */
export const uploadIdOf = (prefix: string, key: string): string | undefined =>
  /^([A-Za-z0-9_-]{1,64})\/data$/.exec(
    key.startsWith(uploadsPrefix(prefix))
      ? key.slice(uploadsPrefix(prefix).length)
      : '',
  )?.[1]
