// nostr-tools side of the interop tests: one JSON request per line on stdin, one JSON reply
// per line on stdout. Driven by tests/interop/nostr_tools.py; every operation uses only
// nostr-tools (and its own @noble dependencies), never the project's code.
import { createInterface } from "node:readline";
import { finalizeEvent, verifyEvent, getPublicKey, getEventHash } from "nostr-tools/pure";
import { v2 as nip44 } from "nostr-tools/nip44";
import { createRumor, createSeal, createWrap } from "nostr-tools/nip59";
import * as nip99 from "nostr-tools/nip99";
import { hexToBytes } from "@noble/hashes/utils.js";

const key = (hex) => hexToBytes(hex);
const convKey = (sk, pk) => nip44.utils.getConversationKey(key(sk), pk);

// A strict unwrap: nostr-tools' own unwrapEvent only decrypts, so the checks NIP-59 implies
// (wrap and seal signatures, seal kind, rumor id, seal signer == rumor author) are made here
// with nostr-tools primitives.
function unwrapStrict(sk, wrap) {
  if (wrap.kind !== 1059) throw new Error("not a gift wrap");
  if (!verifyEvent({ ...wrap })) throw new Error("gift wrap signature invalid");
  const seal = JSON.parse(nip44.decrypt(wrap.content, convKey(sk, wrap.pubkey)));
  if (seal.kind !== 13) throw new Error("not a seal");
  if (!verifyEvent({ ...seal })) throw new Error("seal signature invalid");
  const rumor = JSON.parse(nip44.decrypt(seal.content, convKey(sk, seal.pubkey)));
  if (rumor.pubkey !== seal.pubkey) throw new Error("seal signer is not the rumor author");
  if (getEventHash(rumor) !== rumor.id) throw new Error("rumor id mismatch");
  return rumor;
}

const ops = {
  pubkey: ({ sk }) => getPublicKey(key(sk)),
  sign: ({ sk, template }) => finalizeEvent(template, key(sk)),
  verify: ({ event }) => verifyEvent({ ...event }),
  nip44_encrypt: ({ sk, pk, plaintext }) => nip44.encrypt(plaintext, convKey(sk, pk)),
  nip44_decrypt: ({ sk, pk, payload }) => nip44.decrypt(payload, convKey(sk, pk)),
  wrap: ({ sk, recipient, template }) =>
    createWrap(createSeal(createRumor(template, key(sk)), key(sk), recipient), recipient),
  unwrap: ({ sk, wrap }) => unwrapStrict(sk, wrap),
  nip99_validate: ({ event }) => nip99.validateEvent(event),
  nip99_parse: ({ event }) => nip99.parseEvent(event),
};

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  let reply;
  try {
    const { op, args } = JSON.parse(line);
    if (!(op in ops)) throw new Error(`unknown op ${op}`);
    reply = { ok: true, result: ops[op](args) };
  } catch (err) {
    reply = { ok: false, error: String(err && err.message ? err.message : err) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
});
