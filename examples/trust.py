"""Signed TD, mutual TLS, a group, who may call whom: python examples/trust.py [DIRECTORY_URL]."""

import asyncio
import sys
import tempfile

from weather import agent  # examples/weather.py

from wot_agents import AccessPolicy, AgentIdentity, GroupClient, Membership, TrustPolicy, consume, verify
from wot_agents.bindings.mqtt import LocalBroker
from wot_agents.trust import LocalCA


async def main(url: str, folder: str) -> None:
    me = AgentIdentity.load_or_create(f"{folder}/agent.key")  # Ed25519, file 0600; me.did: did:key:z6Mk...
    caller, owner = AgentIdentity.generate(), AgentIdentity.generate()
    ca = LocalCA.create(f"{folder}/ca")  # or: wot-agents ca init; wot-agents ca issue weather --identity ...
    tls, caller_tls = ca.issue("weather", did=me.did), ca.issue("caller", did=caller.did)
    async with GroupClient(url, owner) as groups:  # the directory is the groups' authority
        authority = (await groups.create("ops", [caller.did]))["authority"]
    policy = AccessPolicy(rules={"forecast": {"group:ops"}}, authorities={authority}, directory=url)
    async with (
        LocalBroker(tls=ca.issue("broker")) as broker,  # mqtts: a certificate of the CA required
        agent.serve(
            http=True, ws=True, mqtt=broker.url, identity=me, tls=tls, access=policy, directory=url
        ) as running,
    ):
        td = running.description  # signed by me, with the schemes a caller must satisfy
        print(verify(td) == [me.did])  # the DIDs that signed it, or SignatureError
        async with Membership(url, caller, "ops") as ops:  # a 60 s credential, refreshed by itself
            for scheme in ("https", "wss", "mqtts"):
                trust = TrustPolicy(trusted={me.did})  # an unsigned or tampered TD: TrustError, nothing sent
                async with consume(td, trust=trust, tls=caller_tls, credentials=ops, prefer=[scheme]) as it:
                    print(scheme, await it.invoke_action("forecast", {"city": "Berlin"}))


with tempfile.TemporaryDirectory() as folder:
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8081", folder))
