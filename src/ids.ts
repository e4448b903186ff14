/**
 * Every NSID the hold defines or serves. Routes are registered from these, never from string
 * literals. Kept apart from lexicons.ts so that the CLI can name them without loading the
 * lexicon validator.
 */
export const ids = {
  // Defined by this hold (lexicons/io/atcr/hold/).
  HoldCaptain: 'io.atcr.hold.captain',
  HoldCrew: 'io.atcr.hold.crew',
  HoldStats: 'io.atcr.hold.stats',
  HoldDefs: 'io.atcr.hold.defs',
  HoldGetStats: 'io.atcr.hold.getStats',
  HoldListStats: 'io.atcr.hold.listStats',
  HoldGetStatsHistory: 'io.atcr.hold.getStatsHistory',
  HoldListTrending: 'io.atcr.hold.listTrending',
  HoldRequestCrew: 'io.atcr.hold.requestCrew',
  HoldLayer: 'io.atcr.hold.layer',
  HoldNotifyManifest: 'io.atcr.hold.notifyManifest',
  HoldGetQuota: 'io.atcr.hold.getQuota',
  HoldListTiers: 'io.atcr.hold.listTiers',
  HoldExportUserData: 'io.atcr.hold.exportUserData',
  HoldDeleteUserData: 'io.atcr.hold.deleteUserData',
  HoldSetStats: 'io.atcr.hold.setStats',
  // ATCR's upload procedures.
  HoldInitiateUpload: 'io.atcr.hold.initiateUpload',
  HoldGetPartUploadUrl: 'io.atcr.hold.getPartUploadUrl',
  HoldUploadPart: 'io.atcr.hold.uploadPart',
  HoldCompleteUpload: 'io.atcr.hold.completeUpload',
  HoldAbortUpload: 'io.atcr.hold.abortUpload',
  // Bluesky's methods, served as a PDS serves them (getBlob with our extension,
  // io.atcr.hold.defs#getBlobExtension).
  ServerDescribeServer: 'com.atproto.server.describeServer',
  IdentityResolveHandle: 'com.atproto.identity.resolveHandle',
  RepoDescribeRepo: 'com.atproto.repo.describeRepo',
  RepoGetRecord: 'com.atproto.repo.getRecord',
  RepoListRecords: 'com.atproto.repo.listRecords',
  RepoCreateRecord: 'com.atproto.repo.createRecord',
  RepoDeleteRecord: 'com.atproto.repo.deleteRecord',
  SyncGetBlob: 'com.atproto.sync.getBlob',
  SyncGetRecord: 'com.atproto.sync.getRecord',
  SyncGetRepo: 'com.atproto.sync.getRepo',
  SyncGetLatestCommit: 'com.atproto.sync.getLatestCommit',
  SyncGetRepoStatus: 'com.atproto.sync.getRepoStatus',
  SyncListRepos: 'com.atproto.sync.listRepos',
  SyncGetBlocks: 'com.atproto.sync.getBlocks',
  SyncListBlobs: 'com.atproto.sync.listBlobs',
  SyncSubscribeRepos: 'com.atproto.sync.subscribeRepos',
} as const

export type Nsid = (typeof ids)[keyof typeof ids]
/** An NSID of ours: its lexicon is in lexicons/. */
export type AtcrNsid = Extract<Nsid, `io.atcr.${string}`>
/** An NSID of Bluesky's: the hold does not ship its lexicon. */
export type AtprotoNsid = Extract<Nsid, `com.atproto.${string}`>
