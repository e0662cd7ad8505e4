"""The Weather agent on every interface, announced on the LAN and registered in a directory."""

import asyncio

from weather import agent  # examples/weather.py

# Until Ctrl-C or SIGTERM: announced by mDNS / DNS-SD, and registered with a 60 s ttl, renewed;
# then it says goodbye on mDNS and deregisters.
asyncio.run(agent.serve(http="0.0.0.0:8080", announce=True, directory="http://127.0.0.1:8081"))
