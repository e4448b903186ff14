/**
 * Who may call what. The getBlob path and the signed-URL upload ask this before they count or
 * write anything. This version lets every caller read and write; service auth, captain and
 * crew checks replace `openAccess` without touching the handlers.
 */
export type Permission = 'blob:read' | 'blob:write'

export type Caller = { did?: string }

export interface AccessControl {
  /** Resolves to the caller when allowed; throws an XRPCError (401/403) otherwise. */
  authorize(req: Request, need: Permission): Promise<Caller>
}

export const openAccess: AccessControl = {
  authorize: async () => ({}),
}
