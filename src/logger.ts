import { pino, type Logger } from 'pino'

export type { Logger }

export const createRootLogger = (level: string): Logger =>
  pino({
    level,
    redact: {
      paths: [
        'req.headers.authorization',
        'headers.authorization',
        'authorization',
        'signingKey',
        'password',
        'token',
      ],
      censor: '[redacted]',
    },
  })
