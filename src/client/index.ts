// atcr-hold/client: a typed client of atcr-hold holds for AppViews (fetch only).
export {
  HoldClient,
  sha256Digest,
  type AbortUploadOutput,
  type AggregatedStats,
  type BlobUrl,
  type CallOptions,
  type CompleteUploadInput,
  type CompleteUploadOutput,
  type Did,
  type GetPartUploadUrlInput,
  type GetPartUploadUrlOutput,
  type HoldClientOptions,
  type HoldResult,
  type InitiateUploadInput,
  type InitiateUploadOutput,
  type ListStatsPage,
  type NotifyManifestInput,
  type NotifyManifestOutput,
  type RequestCrewInput,
  type RequestCrewOutput,
  type StatsHistory,
  type StatsView,
  type TrendingPage,
  type UploadPartOutput,
} from './client.ts'
export { HoldError, type ClientErrorName } from './errors.ts'
export { didDocumentUrl, holdEndpointOf } from './resolve.ts'
export { jwtExp, type GetToken } from './tokens.ts'
export { io } from '../generated/lexicons/index.ts'
