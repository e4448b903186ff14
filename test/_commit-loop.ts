// Commits to an evented repo in a loop until killed, printing each commit's rev (the durability
// test in sequencer.test.ts kills it with SIGKILL at random moments). Usage: _commit-loop.ts DIR
import { Secp256k1Keypair } from '@atproto/crypto'
import { EventedRepo, statsPuts } from './_evented-repo.ts'

const dir = process.argv[2]
const repo = await EventedRepo.open({
  dir,
  did: 'did:web:hold.example.com',
  keypair: await Secp256k1Keypair.import('a1'.repeat(32)),
})
for (let i = 0; ; i++) {
  // Counts no earlier run wrote, so every turn is a commit.
  await repo.put(statsPuts((i * 37) % 5000, 20, Date.now() + i))
  process.stdout.write(`${repo.head.rev}\n`)
}
