import type { ServiceAuth } from './service-auth.ts'
import type { CrewIndex } from './crew.ts'
import type { Permission } from './crew-rules.ts'
import { AuthRequiredError, ForbiddenError } from '../errors.ts'

/**
 * Who may call what, as ATCR's holds decide it: a public hold lets anyone read blobs; a private
 * one needs the owner or a crew member with blob:read or blob:write. Any write needs the owner
 * or crew with blob:write. The getBlob path and uploads ask this before they count or write.
 */
export type Caller = { did?: string }

export class HoldAccess {
  private readonly auth: ServiceAuth
  private readonly crew: CrewIndex

  constructor(auth: ServiceAuth, crew: CrewIndex) {
    this.auth = auth
    this.crew = crew
  }

  /** The caller, verified when the request carries credentials; 401 for bad credentials. */
  async authenticate(req: Request, nsid: string): Promise<Caller> {
    const did = await this.auth.verify(
      req.headers.get('authorization') ?? undefined,
      nsid,
    )
    return { did }
  }

  /** Resolves to the caller when allowed; throws 401 (no credentials) or 403 otherwise. */
  async authorize(
    req: Request,
    need: Permission,
    nsid: string,
  ): Promise<Caller> {
    const caller = await this.authenticate(req, nsid)
    if (need === 'blob:read' && this.crew.captain.public) return caller
    if (!caller.did) {
      throw new AuthRequiredError(
        `access denied for ${need}: this request needs a service token (Authorization: Bearer)`,
      )
    }
    const missing = this.missing(caller.did, need)
    if (missing)
      throw new ForbiddenError(`access denied for ${need}: ${missing}`)
    return caller
  }

  /** Why did lacks a permission now, or undefined when it has it (re-checks a signed URL). */
  missing(did: string, need: Permission): string | undefined {
    if (did === this.crew.captain.owner) return undefined
    const member = this.crew.member(did)
    if (!member) return 'not a crew member'
    const grants =
      need === 'blob:read'
        ? member.permissions.has('blob:read') ||
          member.permissions.has('blob:write')
        : member.permissions.has(need)
    return grants ? undefined : `crew member without ${need}`
  }
}
