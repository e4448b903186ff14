import type { ServiceAuth } from './service-auth.ts'
import type { CrewSource } from './crew.ts'
import type { Permission } from './crew-rules.ts'
import { AuthRequiredError, ForbiddenError } from '../errors.ts'
import {
  clientAddress,
  type ClientRequest,
  type TrustedProxy,
} from './client-address.ts'

/**
 * Who may call what, as ATCR's holds decide it: a public hold lets anyone read blobs; a private
 * one needs the owner or a crew member with blob:read or blob:write. Any write needs the owner
 * or crew with blob:write. The getBlob path and uploads ask this before they count or write.
 */
export type Caller = { did?: string }

export class HoldAccess {
  private readonly auth: ServiceAuth
  private readonly crew: CrewSource
  private readonly proxy: TrustedProxy

  constructor(auth: ServiceAuth, crew: CrewSource, proxy: TrustedProxy) {
    this.auth = auth
    this.crew = crew
    this.proxy = proxy
  }

  /**
   * The caller, verified when the request carries credentials; 401 for bad credentials, 429
   * when too many of the client's tokens have failed (HOLD_FAILED_AUTH_PER_MINUTE).
   */
  async authenticate(c: ClientRequest, nsid: string): Promise<Caller> {
    const authorization = c.req.header('authorization')
    if (authorization === undefined || authorization === '') return {}
    const did = await this.auth.verify(authorization, nsid, () =>
      clientAddress(this.proxy, c),
    )
    return { did }
  }

  /** Resolves to the caller when allowed; throws 401 (no credentials) or 403 otherwise. */
  async authorize(
    c: ClientRequest,
    need: Permission,
    nsid: string,
  ): Promise<Caller> {
    return this.decide(await this.authenticate(c, nsid), need)
  }

  /**
   * authorize() without waiting, for a request that carries no Authorization header at all;
   * undefined when it carries one (even empty), which authorize() must read. The Node request's
   * own headers are asked first: reading one through the fetch API's Headers builds and checks
   * them all, a real share of a getBlob.
   */
  authorizeAnonymous(c: ClientRequest, need: Permission): Caller | undefined {
    const headers = c.env?.incoming?.headers
    const absent = headers
      ? headers.authorization === undefined
      : c.req.header('authorization') === undefined
    return absent ? this.decide({}, need) : undefined
  }

  private decide(caller: Caller, need: Permission): Caller {
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
    this.crew.assertCurrent()
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
