import { verifyRepoCar } from '@atproto/repo'
import type { VerifiedRepo } from '@atproto/repo'
import { expect } from 'vitest'
import { ids } from '../src/ids.ts'
import { atprotoKeyFromDidDoc, getBytes } from './_util.ts'

/** The did:key of the #atproto key the hold at `base` publishes in its did.json. */
export const publishedKey = async (base: string): Promise<string> => {
  const res = await fetch(`${base}/.well-known/did.json`)
  expect(res.status).toBe(200)
  return atprotoKeyFromDidDoc(
    (await res.json()) as Parameters<typeof atprotoKeyFromDidDoc>[0],
  )
}

/** The repo `did` as a CAR from the hold's getRepo. */
export const repoCar = async (
  base: string,
  did: string,
): Promise<Uint8Array> => {
  const car = await getBytes(base, ids.SyncGetRepo, { did })
  expect(car.status).toBe(200)
  return car.bytes
}

/**
 * The hold's repo, verified the way any relay or AppView would: getRepo's CAR checked by
 * @atproto/repo against the key in did.json (or `key`), every record reached from the signed
 * commit. `car` verifies bytes the caller already has (an export file, say).
 */
export const verifiedRepo = async (
  base: string,
  did: string,
  opts: { key?: string; car?: Uint8Array } = {},
): Promise<VerifiedRepo> =>
  verifyRepoCar(
    opts.car ?? (await repoCar(base, did)),
    did,
    opts.key ?? (await publishedKey(base)),
  )

/** The records of one collection in a verified repo. */
export const recordsIn = (repo: VerifiedRepo, collection: string) =>
  repo.creates.filter((c) => c.collection === collection)
