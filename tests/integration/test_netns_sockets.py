"""NetnsSockets: sockets made in a namespace the test created are used from the event loop of
the root namespace — a listener there is not visible from the host's loopback, and back."""
import asyncio

import pytest

from helpers.netns import scratch_netns

from ketch.agent.runtime.namespaces import NetnsSockets


@pytest.fixture
def netns():
    with scratch_netns("ketch-t-sock") as path:
        yield path


def test_listen_and_connect_inside_the_namespace(netns):
    async def main():
        inside = NetnsSockets(netns)
        try:
            sock = await inside.listen("127.0.0.1", 0)
            port = sock.getsockname()[1]

            async def echo(reader, writer):
                writer.write(await reader.read(100))
                await writer.drain()
                writer.close()
            server = await asyncio.start_server(echo, sock=sock)
            async with server:
                reader, writer = await inside.open_connection("127.0.0.1", port, timeout=5)
                writer.write(b"hello")
                assert await reader.read(100) == b"hello"
                writer.close()
                # The host's loopback is another namespace: nothing listens on that port there.
                with pytest.raises(OSError):
                    await NetnsSockets(None).connect("127.0.0.1", port, timeout=5)
        finally:
            inside.close()
    asyncio.run(main())
