// Commits through the hold's writer in a loop until killed, printing each commit's rev (the
// durability test in sequencer.test.ts kills it with SIGKILL at random moments).
// Usage: _commit-loop.ts DIR
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { Database } from '../src/db.ts'
import { loadLexicons } from '../src/lexicons.ts'
import { createRootLogger } from '../src/logger.ts'
import { RecordIndex } from '../src/repo/record-index.ts'
import { SqlRepoStorage } from '../src/repo/storage.ts'
import { RepoWriter } from '../src/repo/writer.ts'
import { statsPuts } from './_evented-repo.ts'

const dir = process.argv[2]
const database = new Database(join(dir, 'hold.sqlite'))
const records = new RecordIndex(database.db)
const writer = await RepoWriter.open({
  database,
  storage: new SqlRepoStorage(database, records),
  records,
  did: 'did:web:hold.example.com',
  keypair: await Secp256k1Keypair.import('a1'.repeat(32)),
  lexicons: loadLexicons(),
  log: createRootLogger('silent'),
})
for (let i = 0; ; i++) {
  // Counts no earlier run wrote, so every turn is a commit.
  const commit = await writer.putRecords(
    statsPuts((i * 37) % 5000, 20, Date.now() + i),
  )
  process.stdout.write(`${commit?.rev}\n`)
}
