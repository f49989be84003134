"""A plain asyncua client reads the simulator's address space over a real localhost socket."""

import asyncio
import datetime as dt
import socket

import pytest
from asyncua import Client, ua

from simulator.errors import PortInUseError
from simulator.plant import PRODUCTION_ARCHETYPES, default_plant
from simulator.server import NAMESPACE_URI, PlantServer, SecuritySettings
from tests.support import wait_for_async

pytestmark = pytest.mark.integration

UNIT_IDS = {"ActivePower": "KWT", "ActiveEnergy": "KWH", "PowerFactor": "C62", "GoodCount": "H87", "ScrapCount": "H87",
            "MaterialConsumed": "KGM", "AirFlow": "G53", "ReceiverPressure": "BAR", "OutdoorTemperature": "CEL"}


def unece(code: str) -> int:
    return (ord(code[0]) << 16) | (ord(code[1]) << 8) | ord(code[2])


async def children(node, refs=ua.ObjectIds.HierarchicalReferences):
    return {(await c.read_browse_name()).Name: c for c in await node.get_children(refs=refs)}


def test_address_space_model():
    plant = default_plant(8)

    async def main():
        async with PlantServer(plant, port=0, intensity=1.0) as server, Client(server.endpoint, timeout=10) as client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            objects = await children(client.nodes.objects)
            sites = await children(objects["Plant"])
            assert set(sites) == {s.id for s in plant.sites}
            analog = ua.NodeId(ua.ObjectIds.AnalogItemType)
            for ref in plant.machines:
                site_children = await children(sites[ref.site.id])
                assert "OutdoorTemperature" in site_children
                assert (await site_children[ref.line.id].read_type_definition()) == ua.NodeId(ua.ObjectIds.FolderType)
                machine = (await children(site_children[ref.line.id]))[ref.spec.id]
                assert machine.nodeid == ua.NodeId(ref.path, idx)
                vars_ = await children(machine, ua.ObjectIds.HasComponent)
                expected = {"ActivePower", "ActiveEnergy", "PowerFactor", "MachineState"}
                if ref.archetype in PRODUCTION_ARCHETYPES:
                    expected |= {"GoodCount", "ScrapCount", "MaterialConsumed", "MaterialId", "AirFlow"}
                if ref.archetype == "compressor":
                    expected |= {"AirFlow", "ReceiverPressure"}
                assert set(vars_) == expected, ref.path
                for name, node in vars_.items():
                    assert node.nodeid == ua.NodeId(f"{ref.path}/{name}", idx)
                    if name in UNIT_IDS:
                        assert await node.read_type_definition() == analog
                        props = await children(node, ua.ObjectIds.HasProperty)
                        eu = await props["EngineeringUnits"].read_value()
                        assert eu.UnitId == unece(UNIT_IDS[name]) and eu.NamespaceUri.endswith("cefact")
                        rng = await props["EURange"].read_value()
                        value = await node.read_value()
                        assert rng.Low <= value <= rng.High, (ref.path, name, value, rng)
                power = await vars_["ActivePower"].read_data_value()
                assert abs((power.SourceTimestamp - dt.datetime.now(dt.UTC)).total_seconds()) < 5
                assert await vars_["PowerFactor"].read_value() <= 1.0
            state = client.get_node(ua.NodeId("north/l1/cnc-01/MachineState", idx))
            dtype = await state.read_data_type()
            definition = await client.get_node(dtype).read_data_type_definition()
            assert [(f.Value, f.Name) for f in definition.Fields] == [(0, "Off"), (1, "Idle"), (2, "Running"), (3, "Fault")]
            assert await state.read_value() in (0, 1, 2, 3)
            temp = client.get_node(ua.NodeId("north/OutdoorTemperature", idx))
            assert -40 < await temp.read_value() < 50
            # Values move every simulated second.
            energy = client.get_node(ua.NodeId("north/utilities/compressor-01/ActiveEnergy", idx))
            first = await energy.read_data_value()
            updates = server.updates
            await wait_for_async(lambda: server.updates >= max(3, updates + 2), 30, "two more server updates")
            later = await energy.read_data_value()
            assert later.SourceTimestamp > first.SourceTimestamp

    asyncio.run(main())


def test_port_in_use_is_a_clear_error():
    async def main():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = sock.getsockname()[1]
            server = PlantServer(default_plant(2), port=port, intensity=1.0)
            with pytest.raises(PortInUseError, match=f"port {port}.*--port"):
                await server.start()
            await server.stop()

    asyncio.run(main())


def test_secured_endpoint_with_username(tmp_path):
    from simulator.security import ensure_server_certificate

    async def main():
        sec = SecuritySettings(("Sign", "SignAndEncrypt"), tmp_path / "server-certs", (("operator", "s3cret-pw"),))
        async with PlantServer(default_plant(2), port=0, intensity=1.0, security=sec) as server:
            key, cert = await ensure_server_certificate(tmp_path / "client-certs", "localhost")
            assert (tmp_path / "server-certs" / "simulator-key.pem").stat().st_mode & 0o077 == 0
            for mode in ("Sign", "SignAndEncrypt"):
                client = Client(server.endpoint, timeout=10)
                client.application_uri = "urn:wattline:simulator:server"
                await client.set_security_string(f"Basic256Sha256,{mode},{cert},{key}")
                client.set_user("operator")
                client.set_password("s3cret-pw")
                async with client:
                    idx = await client.get_namespace_index(NAMESPACE_URI)
                    value = await client.get_node(ua.NodeId("north/l1/cnc-01/ActivePower", idx)).read_value()
                    assert value >= 0
            bad = Client(server.endpoint, timeout=10)
            bad.application_uri = "urn:wattline:simulator:server"
            await bad.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
            bad.set_user("operator")
            bad.set_password("wrong")
            with pytest.raises(ua.UaError):  # wrong password: the session is refused
                async with bad:
                    pass
            plain = Client(server.endpoint, timeout=10)
            with pytest.raises(ua.UaError):  # no security: no endpoint of the secured server matches
                async with plain:
                    pass

    asyncio.run(main())
