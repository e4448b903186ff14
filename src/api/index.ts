import type { AppContext } from '../context.ts'
import * as admin from './admin/index.ts'
import * as blobUrl from './blob-url.ts'
import * as health from './health.ts'
import * as resolveHandle from './com/atproto/identity/resolveHandle.ts'
import * as createRecord from './com/atproto/repo/createRecord.ts'
import * as deleteRecord from './com/atproto/repo/deleteRecord.ts'
import * as describeRepo from './com/atproto/repo/describeRepo.ts'
import * as getRecord from './com/atproto/repo/getRecord.ts'
import * as listRecords from './com/atproto/repo/listRecords.ts'
import * as describeServer from './com/atproto/server/describeServer.ts'
import * as getBlob from './com/atproto/sync/getBlob.ts'
import * as getBlocks from './com/atproto/sync/getBlocks.ts'
import * as getLatestCommit from './com/atproto/sync/getLatestCommit.ts'
import * as syncGetRecord from './com/atproto/sync/getRecord.ts'
import * as getRepo from './com/atproto/sync/getRepo.ts'
import * as getRepoStatus from './com/atproto/sync/getRepoStatus.ts'
import * as listBlobs from './com/atproto/sync/listBlobs.ts'
import * as listRepos from './com/atproto/sync/listRepos.ts'
import * as subscribeRepos from './com/atproto/sync/subscribeRepos.ts'
import * as getStats from './io/atcr/hold/getStats.ts'
import * as getStatsHistory from './io/atcr/hold/getStatsHistory.ts'
import * as listStats from './io/atcr/hold/listStats.ts'
import * as listTrending from './io/atcr/hold/listTrending.ts'
import * as metrics from './metrics.ts'
import * as deleteUserData from './io/atcr/hold/deleteUserData.ts'
import * as exportUserData from './io/atcr/hold/exportUserData.ts'
import * as setStats from './io/atcr/hold/setStats.ts'
import * as getQuota from './io/atcr/hold/getQuota.ts'
import * as listTiers from './io/atcr/hold/listTiers.ts'
import * as notifyManifest from './io/atcr/hold/notifyManifest.ts'
import * as requestCrew from './io/atcr/hold/requestCrew.ts'
import * as uploads from './io/atcr/hold/uploads.ts'
import * as statusPage from './status-page.ts'
import type { App } from './util.ts'
import * as wellKnown from './well-known.ts'

export const registerRoutes = (app: App, ctx: AppContext): void => {
  wellKnown.register(app, ctx)
  health.register(app, ctx)
  describeServer.register(app, ctx)
  resolveHandle.register(app, ctx)
  describeRepo.register(app, ctx)
  getRecord.register(app, ctx)
  listRecords.register(app, ctx)
  createRecord.register(app, ctx)
  deleteRecord.register(app, ctx)
  syncGetRecord.register(app, ctx)
  getBlocks.register(app, ctx)
  listBlobs.register(app, ctx)
  subscribeRepos.register(app, ctx)
  getRepo.register(app, ctx)
  getLatestCommit.register(app, ctx)
  getRepoStatus.register(app, ctx)
  listRepos.register(app, ctx)
  getBlob.register(app, ctx)
  getStats.register(app, ctx)
  getStatsHistory.register(app, ctx)
  listStats.register(app, ctx)
  listTrending.register(app, ctx)
  requestCrew.register(app, ctx)
  notifyManifest.register(app, ctx)
  getQuota.register(app, ctx)
  listTiers.register(app, ctx)
  exportUserData.register(app, ctx)
  deleteUserData.register(app, ctx)
  setStats.register(app, ctx)
  uploads.register(app, ctx)
  blobUrl.register(app, ctx)
  metrics.register(app, ctx)
  statusPage.register(app, ctx)
  admin.register(app, ctx)
}
