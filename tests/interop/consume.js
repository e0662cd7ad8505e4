// node-wot consumes a wot-agents agent: reads a property and invokes an action over HTTP and MQTT.
// Usage: node consume.js TD_URL. Prints one JSON object with what it got.
"use strict";
const { Servient } = require("@node-wot/core");
const { HttpClientFactory } = require("@node-wot/binding-http");
const { MqttClientFactory } = require("@node-wot/binding-mqtt");

function formIndex(affordance, scheme, op) {
  const index = affordance.forms.findIndex(
    (form) => form.href.startsWith(scheme + "://") && (!form.op || [].concat(form.op).includes(op))
  );
  if (index < 0) throw new Error(`no ${scheme} form for ${op}`);
  return index;
}

async function main() {
  const servient = new Servient();
  servient.addClientFactory(new HttpClientFactory(null));
  servient.addClientFactory(new MqttClientFactory());
  const WoT = await servient.start();
  const td = await WoT.requestThingDescription(process.argv[2]);
  const thing = await WoT.consume(td);
  const result = {};
  for (const scheme of ["http", "mqtt"]) {
    const read = await thing.readProperty("temperature", {
      formIndex: formIndex(td.properties.temperature, scheme, "readproperty"),
    });
    const invoked = await thing.invokeAction("add", { a: 20, b: 22 }, {
      formIndex: formIndex(td.actions.add, scheme, "invokeaction"),
    });
    result[scheme] = { temperature: await read.value(), add: scheme === "http" ? await invoked.value() : null };
  }
  const written = await thing.writeProperty("temperature", 31.5, {
    formIndex: formIndex(td.properties.temperature, "mqtt", "writeproperty"),
  });
  result.title = thing.getThingDescription().title;
  console.log(JSON.stringify(result));
  await servient.shutdown();
  process.exit(0);
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  process.exit(1);
});
