import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { renderStatusPage } from '../src/api/status-page.ts'
import {
  pushBlob,
  removeDir,
  startHold,
  TEST_OWNER,
  xrpc,
  type TestHold,
} from './_util.ts'

const holds: TestHold[] = []
afterEach(async () => {
  for (const hold of holds.splice(0)) {
    await hold.stop()
    await removeDir(hold.dataDir)
  }
})

const OTHER = 'did:plc:statuspageother0000000000'

describe('GET / (status page)', () => {
  it('shows the DID, owner, access, totals and the most pulled repositories first, as bars to scale', async () => {
    const hold = await startHold()
    holds.push(hold)
    const pulls = { alpha: 5, beta: 2, gamma: 8 }
    for (const [repo, n] of Object.entries(pulls)) {
      const { digest } = await pushBlob(hold.url, randomBytes(32), {
        did: repo === 'beta' ? OTHER : TEST_OWNER,
        repo,
      })
      for (let i = 0; i < n; i++) {
        const res = await xrpc(hold.url, ids.SyncGetBlob, {
          did: repo === 'beta' ? OTHER : TEST_OWNER,
          cid: digest,
          repo,
          method: 'GET',
        })
        expect(res.status).toBe(200)
      }
    }

    const res = await fetch(`${hold.url}/`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/html; charset=UTF-8')
    const csp = res.headers.get('content-security-policy')!
    expect(csp).toContain("default-src 'none'")
    expect(csp).not.toContain('script-src')
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    const html = await res.text()

    expect(html).toContain(`<code id="hold-did">${hold.did}</code>`)
    expect(html).toContain(`<code id="owner-did">${TEST_OWNER}</code>`)
    expect(html).toContain('<span class="badge public">public</span>')
    expect(html).toContain('<span class="value" id="total-pulls">15</span>')
    expect(html).toContain('<span class="value" id="total-pushes">3</span>')
    expect(html).toContain('<span class="value" id="total-repos">3</span>')
    expect(html).not.toContain('<script')

    const bars = [
      ...html.matchAll(
        /<text class="repo"[^>]*>([^<]+)<\/text>[\s\S]*?<rect class="bar"[^>]* width="(\d+)"[^>]* data-pulls="(\d+)"/g,
      ),
    ].map((m) => ({ repo: m[1], width: Number(m[2]), pulls: Number(m[3]) }))
    expect(bars).toEqual([
      { repo: 'gamma', width: 360, pulls: 8 },
      { repo: 'alpha', width: 225, pulls: 5 },
      { repo: 'beta', width: 90, pulls: 2 },
    ])
    expect(html).toContain(`<td><code>${OTHER}</code></td>`)
  })

  it('says private for a private hold, shows it without credentials, and has no chart before the first pull', async () => {
    const hold = await startHold({ env: { HOLD_PUBLIC: 'false' } })
    holds.push(hold)
    const res = await fetch(`${hold.url}/`)
    expect(res.status).toBe(200)
    const html = await res.text()
    expect(html).toContain('<span class="badge private">private</span>')
    expect(html).toContain('private: owner and crew only')
    expect(html).toContain('No pulls counted yet.')
    expect(html).not.toContain('<svg')
    expect(html).toContain('<span class="value" id="total-pulls">0</span>')
  })
})

describe('renderStatusPage', () => {
  it('escapes every string it puts into the HTML and the SVG', () => {
    const evil = `"><script>alert(1)</script><img src=x onerror='alert(2)'>&`
    const html = renderStatusPage({
      did: `did:web:${evil}`,
      handle: evil,
      version: evil,
      owner: evil,
      public: true,
      allowAllCrew: false,
      countSource: 'blob',
      totals: { pairs: 1, pulls: 3, pushes: 0 },
      top: [{ did: evil, repository: evil, pullCount: 3, pushCount: 0 }],
      generatedAt: evil,
    })
    expect(html).not.toContain('<script')
    expect(html).not.toContain('<img')
    expect(html).not.toContain(`'alert(2)'`)
    expect(html).not.toMatch(/&(?!(amp|lt|gt|quot|#39);)/)
    expect(html).toContain('&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;')
    // The repository shows in the chart label, its tooltip and the table, all escaped.
    expect(html.split('&lt;script&gt;').length - 1).toBeGreaterThanOrEqual(8)
  })
})
