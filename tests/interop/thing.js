// node-wot exposes a thing over HTTP and MQTT for wot-agents to consume.
// Usage: node thing.js HTTP_PORT MQTT_URL. Prints "READY" when exposed; runs until killed.
"use strict";
const { Servient, Helpers } = require("@node-wot/core");
const { HttpServer } = require("@node-wot/binding-http");
const { MqttBrokerServer } = require("@node-wot/binding-mqtt");

async function main() {
  // Forms must name loopback only: node-wot lists every interface's address by default.
  Helpers.setStaticAddress("127.0.0.1");
  const port = Number(process.argv[2]);
  const servient = new Servient();
  servient.addServer(new HttpServer({ port, address: "127.0.0.1", baseUri: `http://127.0.0.1:${port}` }));
  servient.addServer(new MqttBrokerServer({ uri: process.argv[3] }));
  const WoT = await servient.start();
  let count = 0;
  const thing = await WoT.produce({
    title: "counter",
    properties: { count: { type: "integer", readOnly: true, observable: true } },
    actions: {
      increment: { input: { type: "integer" }, output: { type: "integer" } },
      reset: {},
    },
  });
  thing.setPropertyReadHandler("count", async () => count);
  thing.setActionHandler("increment", async (params) => {
    count += params ? await params.value() : 1;
    thing.emitPropertyChange("count");
    return count;
  });
  thing.setActionHandler("reset", async () => {
    count = 0;
    thing.emitPropertyChange("count");
    return undefined;
  });
  await thing.expose();
  console.log("READY");
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  process.exit(1);
});
