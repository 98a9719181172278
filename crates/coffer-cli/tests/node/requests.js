// Test helper: sends each line of standard input as one request on its own connection to
// the socket in argv[2], in order, and prints the replies as one JSON array. Run as another
// user (setpriv) to be a different peer; Node.js is only the client here.
const net = require('net');

function send(socket, line) {
  return new Promise((resolve, reject) => {
    const client = net.createConnection(socket, () => client.write(line));
    let response = '';
    client.on('data', (data) => { response += data.toString(); });
    client.on('end', () => resolve(JSON.parse(response)));
    client.on('error', reject);
  });
}

(async () => {
  const input = require('fs').readFileSync(0, 'utf8');
  const lines = input.split('\n').filter((l) => l.trim() !== '');
  const replies = [];
  for (const line of lines) {
    replies.push(await send(process.argv[2], line));
  }
  console.log(JSON.stringify(replies));
})().catch((e) => { console.error(String(e)); process.exit(1); });
