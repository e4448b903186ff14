import { HoldError } from './errors.ts'
import { Inflight, TtlCache } from './cache.ts'

/**
 * Returns a service token for calling `lxm` on the hold `aud` (the hold's bare DID), valid
 * until about `exp` (unix seconds). With a PDS session: com.atproto.server.getServiceAuth
 * with these three parameters. With OAuth, ask for `${aud}#atcr_hold`: the hold takes both.
 */
export type GetToken = (
  aud: string,
  lxm: string,
  opts: { exp: number },
) => string | Promise<string>

/** The `exp` claim of a JWT, in unix seconds, or undefined when it has none. */
export const jwtExp = (token: string): number | undefined => {
  const part = token.split('.')[1]
  if (!part) return undefined
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/')
    const json = JSON.parse(
      atob(b64.padEnd(b64.length + ((4 - (b64.length % 4)) % 4), '=')),
    ) as { exp?: unknown }
    return typeof json.exp === 'number' ? json.exp : undefined
  } catch {
    return undefined
  }
}

/** Keeps one token per (aud, lxm) and asks for a new one shortly before it expires. */
export class TokenCache {
  readonly #cache: TtlCache<string>
  readonly #inflight = new Inflight<string>()

  readonly getToken: GetToken
  readonly lifetimeSec: number
  readonly marginSec: number

  constructor(
    getToken: GetToken,
    lifetimeSec: number,
    marginSec: number,
    max: number,
  ) {
    this.getToken = getToken
    this.lifetimeSec = lifetimeSec
    this.marginSec = marginSec
    this.#cache = new TtlCache(max)
  }

  get(aud: string, lxm: string): Promise<string> {
    const key = `${aud} ${lxm}`
    const hit = this.#cache.get(key)
    if (hit) return Promise.resolve(hit)
    return this.#inflight.run(key, async () => {
      const now = Date.now()
      const asked = Math.floor(now / 1000) + this.lifetimeSec
      let token: string
      try {
        token = await this.getToken(aud, lxm, { exp: asked })
      } catch (err) {
        throw new HoldError(
          'TokenUnavailable',
          `no token for ${lxm} on ${aud}: ${(err as Error)?.message ?? err}`,
          { hold: aud, nsid: lxm, cause: err },
        )
      }
      if (typeof token !== 'string' || !token) {
        throw new HoldError(
          'TokenUnavailable',
          `the token function gave no token for ${lxm} on ${aud}`,
          { hold: aud, nsid: lxm },
        )
      }
      const exp = Math.min(jwtExp(token) ?? asked, asked)
      this.#cache.set(key, token, (exp - this.marginSec) * 1000 - now, now)
      return token
    })
  }

  /** Forgets a token the hold refused, so the next call asks for a new one. */
  drop(aud: string, lxm: string): void {
    this.#cache.delete(`${aud} ${lxm}`)
  }
}
