// Test helper: an impostor daemon (issue 12, item 6). Run as another user (setpriv), it
// creates the directory in argv[2] open to everyone, as a local attacker would before the
// victim's daemon does, listens on coffer.sock in it, and answers every request as coffer
// would ({"ok":true}). For each connection it prints one line of JSON: the bytes it
// received (their count and their text), so the test can show what reached it. It prints "ready" first.
const fs = require('fs');
const net = require('net');
const path = require('path');

const dir = process.argv[2];
fs.mkdirSync(dir, { mode: 0o777 });
fs.chmodSync(dir, 0o777);
const sock = path.join(dir, 'coffer.sock');
const server = net.createServer((conn) => {
  const chunks = [];
  conn.on('data', (d) => {
    chunks.push(d);
    if (Buffer.concat(chunks).includes('}')) {
      conn.end('{"ok":true,"version":1}\n');
    }
  });
  conn.on('error', () => {});
  conn.on('close', () => {
    const all = Buffer.concat(chunks);
    process.stdout.write(JSON.stringify({ bytes: all.length, received: all.toString() }) + '\n');
  });
});
server.listen(sock, () => {
  fs.chmodSync(sock, 0o777);
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => process.exit(0));
