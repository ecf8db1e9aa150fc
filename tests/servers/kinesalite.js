// kinesalite (a Kinesis-compatible server) on 127.0.0.1 only: its own command line listens on every
// interface. Usage: node kinesalite.js <port>
const kinesalite = require("kinesalite");

const port = Number(process.argv[2]);
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100 });
server.listen(port, "127.0.0.1", () => console.log(`Listening at http://127.0.0.1:${port}`));
