/**
 * SipHash-2-4 (Aumasson and Bernstein), the keyed hash made for short inputs: without the key,
 * its output says nothing of the input, so even the small space of IPv4 addresses cannot be
 * searched. 64-bit words as pairs of 32-bit halves; the input's characters are taken as bytes,
 * so it is for ASCII strings (client addresses are). Returns the low 32 bits of the result.
 */
export const sipHash32 = (key: Uint8Array, input: string): number => {
  const k0l = word(key, 0)
  const k0h = word(key, 4)
  const k1l = word(key, 8)
  const k1h = word(key, 12)
  // "somepseudorandomlygeneratedbytes"
  v0h = (k0h ^ 0x736f6d65) >>> 0
  v0l = (k0l ^ 0x70736575) >>> 0
  v1h = (k1h ^ 0x646f7261) >>> 0
  v1l = (k1l ^ 0x6e646f6d) >>> 0
  v2h = (k0h ^ 0x6c796765) >>> 0
  v2l = (k0l ^ 0x6e657261) >>> 0
  v3h = (k1h ^ 0x74656462) >>> 0
  v3l = (k1l ^ 0x79746573) >>> 0
  const len = input.length
  const whole = len - (len % 8)
  for (let i = 0; i < whole; i += 8) {
    const ml = byteWord(input, i)
    const mh = byteWord(input, i + 4)
    v3l = (v3l ^ ml) >>> 0
    v3h = (v3h ^ mh) >>> 0
    round()
    round()
    v0l = (v0l ^ ml) >>> 0
    v0h = (v0h ^ mh) >>> 0
  }
  let ml = 0
  let mh = (len & 0xff) << 24
  for (let i = whole; i < len; i++) {
    const b = input.charCodeAt(i) & 0xff
    const at = i - whole
    if (at < 4) ml |= b << (8 * at)
    else mh |= b << (8 * (at - 4))
  }
  ml >>>= 0
  mh >>>= 0
  v3l = (v3l ^ ml) >>> 0
  v3h = (v3h ^ mh) >>> 0
  round()
  round()
  v0l = (v0l ^ ml) >>> 0
  v0h = (v0h ^ mh) >>> 0
  v2l = (v2l ^ 0xff) >>> 0
  round()
  round()
  round()
  round()
  return (v0l ^ v1l ^ v2l ^ v3l) >>> 0
}

/** The full 64-bit result as hex, big-endian (to check against the reference vectors). */
export const sipHashHex = (key: Uint8Array, input: string): string => {
  sipHash32(key, input)
  const hi = (v0h ^ v1h ^ v2h ^ v3h) >>> 0
  const lo = (v0l ^ v1l ^ v2l ^ v3l) >>> 0
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0')
}

let v0l = 0
let v0h = 0
let v1l = 0
let v1h = 0
let v2l = 0
let v2h = 0
let v3l = 0
let v3h = 0

const word = (b: Uint8Array, o: number): number =>
  (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0

const byteWord = (s: string, o: number): number =>
  ((s.charCodeAt(o) & 0xff) |
    ((s.charCodeAt(o + 1) & 0xff) << 8) |
    ((s.charCodeAt(o + 2) & 0xff) << 16) |
    ((s.charCodeAt(o + 3) & 0xff) << 24)) >>>
  0

const round = (): void => {
  let l: number
  let t: number
  // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
  l = (v0l + v1l) >>> 0
  v0h = (v0h + v1h + (l < v0l ? 1 : 0)) >>> 0
  v0l = l
  t = ((v1h << 13) | (v1l >>> 19)) >>> 0
  v1l = ((v1l << 13) | (v1h >>> 19)) >>> 0
  v1h = t
  v1l = (v1l ^ v0l) >>> 0
  v1h = (v1h ^ v0h) >>> 0
  t = v0l
  v0l = v0h
  v0h = t
  // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
  l = (v2l + v3l) >>> 0
  v2h = (v2h + v3h + (l < v2l ? 1 : 0)) >>> 0
  v2l = l
  t = ((v3h << 16) | (v3l >>> 16)) >>> 0
  v3l = ((v3l << 16) | (v3h >>> 16)) >>> 0
  v3h = t
  v3l = (v3l ^ v2l) >>> 0
  v3h = (v3h ^ v2h) >>> 0
  // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
  l = (v0l + v3l) >>> 0
  v0h = (v0h + v3h + (l < v0l ? 1 : 0)) >>> 0
  v0l = l
  t = ((v3h << 21) | (v3l >>> 11)) >>> 0
  v3l = ((v3l << 21) | (v3h >>> 11)) >>> 0
  v3h = t
  v3l = (v3l ^ v0l) >>> 0
  v3h = (v3h ^ v0h) >>> 0
  // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
  l = (v2l + v1l) >>> 0
  v2h = (v2h + v1h + (l < v2l ? 1 : 0)) >>> 0
  v2l = l
  t = ((v1h << 17) | (v1l >>> 15)) >>> 0
  v1l = ((v1l << 17) | (v1h >>> 15)) >>> 0
  v1h = t
  v1l = (v1l ^ v2l) >>> 0
  v1h = (v1h ^ v2h) >>> 0
  t = v2l
  v2l = v2h
  v2h = t
}
