// The device daemon's Node.js client, as reference 000 ("Implementation Example") prints it:
// the three functions below are copied from the document unchanged, socket path included.
// The driver at the bottom runs the four documented workflows and prints what they returned.
const net = require('net');

function setSecret(name, value) {
  return new Promise((resolve, reject) => {
    const client = net.createConnection('/run/tpmd.sock', () => {
      const request = JSON.stringify({ action: 'set', name, value });
      client.write(request);
    });

    let response = '';
    client.on('data', (data) => { response += data.toString(); });
    client.on('end', () => resolve(JSON.parse(response)));
    client.on('error', reject);
  });
}

function getSecret(name) {
  return new Promise((resolve, reject) => {
    const client = net.createConnection('/run/tpmd.sock', () => {
      const request = JSON.stringify({ action: 'get', name });
      client.write(request);
    });

    let response = '';
    client.on('data', (data) => { response += data.toString(); });
    client.on('end', () => {
      const result = JSON.parse(response);
      resolve(result.value);
    });
    client.on('error', reject);
  });
}

function deleteSecret(name) {
  return new Promise((resolve, reject) => {
    const client = net.createConnection('/run/tpmd.sock', () => {
      const request = JSON.stringify({ action: 'del', name });
      client.write(request);
    });

    let response = '';
    client.on('data', (data) => { response += data.toString(); });
    client.on('end', () => resolve(JSON.parse(response)));
    client.on('error', reject);
  });
}

// ---- driver (not part of the reference) ----
(async () => {
  const out = {};
  out.set = await setSecret('third-party-api-key', 'sk_live_abc123xyz');
  out.get = await getSecret('third-party-api-key');
  out.rotate = await setSecret('third-party-api-key', 'sk_live_new_key_456');
  out.getRotated = await getSecret('third-party-api-key');
  out.del = await deleteSecret('third-party-api-key');
  out.getDeleted = await getSecret('third-party-api-key');
  out.delDeleted = await deleteSecret('third-party-api-key');
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(String(e)); process.exit(1); });
