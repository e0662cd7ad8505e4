// node-wot uses a wot-agents directory through nothing but the directory's own TD (its forms), and
// `eventsource` (the W3C EventSource node-wot itself depends on) follows the directory's events.
// Usage: node directory.js BASE_URL. Prints one JSON object with what it got.
"use strict";
const { Servient, ContentSerdes, JsonCodec } = require("@node-wot/core");
const { HttpClientFactory } = require("@node-wot/binding-http");
const EventSource = require("eventsource");

const TD10 = "https://www.w3.org/2019/wot/td/v1"; // node-wot 0.8 validates TDs with the TD 1.0 schema
const lamp = {
  "@context": [TD10, "https://www.w3.org/2022/wot/td/v1.1"],
  id: "urn:example:node-wot:lamp",
  title: "Lamp",
  securityDefinitions: { nosec_sc: { scheme: "nosec" } },
  security: "nosec_sc",
  properties: { on: { type: "boolean", forms: [{ href: "http://127.0.0.1:9/on" }] } },
};

function events(url, lastEventId, count) {
  // Resolves with the first `count` directory events (type, id, data) of the stream.
  return new Promise((resolve, reject) => {
    const got = [];
    const source = new EventSource(url, { headers: { "Last-Event-ID": lastEventId } });
    const timer = setTimeout(() => {
      source.close();
      reject(new Error(`only ${got.length} events: ${JSON.stringify(got)}`));
    }, 20000);
    for (const type of ["thing_created", "thing_updated", "thing_deleted"]) {
      source.addEventListener(type, (event) => {
        got.push({ type, id: event.lastEventId, data: JSON.parse(event.data) });
        if (got.length === count) {
          clearTimeout(timer);
          source.close();
          resolve(got);
        }
      });
    }
    source.onerror = (error) => {
      if (source.readyState === EventSource.CLOSED) reject(new Error(`event stream failed: ${error.message}`));
    };
  });
}

async function main() {
  const base = process.argv[2];
  // node-wot 0.8 has no codec for RFC 7396 merge patches: register its JSON codec for that type.
  ContentSerdes.get().addCodec(new JsonCodec("application/merge-patch+json"));
  const servient = new Servient();
  servient.addClientFactory(new HttpClientFactory(null));
  const WoT = await servient.start();
  const result = {};

  const directoryTd = await WoT.requestThingDescription(`${base}/.well-known/wot`); // validates it
  result.type = directoryTd["@type"];
  const directory = await WoT.consume(directoryTd);
  await directory.invokeAction("createThing", lamp, { uriVariables: { id: lamp.id } });
  const anonymous = { ...lamp, title: "Anonymous lamp" };
  delete anonymous.id;
  await directory.invokeAction("createAnonymousThing", anonymous);
  await directory.invokeAction("partiallyUpdateThing", { title: "Patched lamp" }, { uriVariables: { id: lamp.id } });
  const retrieved = await directory.invokeAction("retrieveThing", undefined, { uriVariables: { id: lamp.id } });
  result.retrieved = await retrieved.value();
  result.page = await (await directory.readProperty("things", { uriVariables: { limit: 1 } })).value();
  result.collection = await (await directory.readProperty("things", { uriVariables: { format: "collection" } })).value();
  result.explored = [];
  for await (const td of await WoT.exploreDirectory(`${base}/.well-known/wot`)) result.explored.push(td.id);
  const jsonpath = await directory.invokeAction("searchJSONPath", undefined, {
    uriVariables: { query: "$[?@.title=='Patched lamp'].id" },
  });
  result.jsonpath = await jsonpath.value();
  const sparql = await directory.invokeAction("searchSPARQL", undefined, {
    uriVariables: { query: "SELECT ?id WHERE { ?id <https://www.w3.org/2019/wot/td#title> ?title } ORDER BY ?id" },
  });
  result.sparql = await sparql.value();

  // The three writes above are replayed from Last-Event-ID 0; the deletion arrives live.
  const stream = events(`${base}/events?diff=true`, "0", 4);
  await new Promise((resolve) => setTimeout(resolve, 500));
  await directory.invokeAction("deleteThing", undefined, { uriVariables: { id: lamp.id } });
  result.events = await stream;
  try {
    await directory.invokeAction("retrieveThing", undefined, { uriVariables: { id: lamp.id } });
    result.afterDelete = "found";
  } catch (error) {
    result.afterDelete = error.message;
  }
  console.log(JSON.stringify(result));
  await servient.shutdown();
  process.exit(0);
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  process.exit(1);
});
