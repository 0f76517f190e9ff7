// Builds a StandardMerkleTree with OpenZeppelin's own JavaScript library
// (@openzeppelin/merkle-tree) so Rust tests can compare roots and proofs byte for byte.
// Usage: node scripts/oz-merkle.js IN.json OUT.json
//   IN:  { "values": [[sourceChainId, sourceGateway, nonce, sender, destChainId, destInbox, recipient,
//                       gasLimit, payloadHash], ...],   (on-chain format v2 leaf, contracts/V2.md §2)
//          "multi": [value indices] }
//   OUT: { "root", "leaves": [...], "proofs": [[...]], "multi": { "leaves", "proof", "proofFlags" } }
'use strict';
const fs = require('fs');
const path = require('path');
const { StandardMerkleTree } = require(path.join(__dirname, '..', 'node_modules', '@openzeppelin', 'merkle-tree'));

const [input, output] = process.argv.slice(2);
const { values, multi } = JSON.parse(fs.readFileSync(input, 'utf8'));
const types = ['uint256', 'address', 'uint256', 'address', 'uint256', 'address', 'address', 'uint256', 'bytes32'];
const tree = StandardMerkleTree.of(values, types);
const mp = tree.getMultiProof(multi);
fs.writeFileSync(output, JSON.stringify({
  root: tree.root,
  leaves: values.map(v => tree.leafHash(v)),
  proofs: values.map((_, i) => tree.getProof(i)),
  multi: { leaves: mp.leaves.map(v => tree.leafHash(v)), proof: mp.proof, proofFlags: mp.proofFlags },
}));
