"""A small asyncua plant server for tests, shaped like the simulator's address space.

``Objects/Plant/<site>/<line>/<machine>`` with String NodeIds ``ns=<idx>;s=<site>/<line>/<machine>/<Name>`` in the
namespace ``urn:wattline:simulator``; per site an ``OutdoorTemperature`` variable.
"""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import dataclass, field

from asyncua import Server, ua
from asyncua.common.structures104 import new_enum

NS_URI = "urn:wattline:simulator"

MACHINE_VARS = (
    # name, variant type, initial value, unit
    ("ActivePower", ua.VariantType.Double, 10.0, "kW"),
    ("ActiveEnergy", ua.VariantType.Double, 1000.0, "kWh"),
    ("PowerFactor", ua.VariantType.Double, 0.9, None),
    ("GoodCount", ua.VariantType.UInt32, 0, None),
    ("ScrapCount", ua.VariantType.UInt32, 0, None),
    ("MaterialConsumed", ua.VariantType.Double, 0.0, "kg"),
    ("MaterialId", ua.VariantType.String, "steel-s235", None),
    ("AirFlow", ua.VariantType.Double, 1.5, "m³/min"),
)


def free_port() -> int:
    """A free TCP port on localhost (bind to port 0 and release)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eu_information(unit: str) -> ua.EUInformation:
    eu = ua.EUInformation()
    eu.NamespaceUri = "http://www.opcfoundation.org/UA/units/un/cefact"
    eu.DisplayName = ua.LocalizedText(unit)
    eu.Description = ua.LocalizedText(unit)
    return eu


@dataclass
class PlantServer:
    """A running test server and its variables by path ``site/line/machine/Name``."""

    server: Server
    endpoint: str
    ns: int
    variables: dict = field(default_factory=dict)

    async def write(self, path: str, value, status: int = 0, source_time: dt.datetime | None = None) -> None:
        var = self.variables[path]
        vtype = await var.read_data_type_as_variant_type()
        dv = ua.DataValue(
            ua.Variant(value, vtype),
            StatusCode=ua.StatusCode(status),
            SourceTimestamp=source_time or dt.datetime.now(dt.UTC),
            ServerTimestamp=dt.datetime.now(dt.UTC),
        )
        await self.server.write_attribute_value(var.nodeid, dv)

    async def stop(self) -> None:
        await self.server.stop()


async def start_plant_server(
    port: int | None = None,
    layout: dict[str, dict[str, list[str]]] | None = None,
    extra_vars_per_machine: int = 0,
    users: dict[str, str] | None = None,
    secure: tuple[str, str] | None = None,
    extra_ns: str | None = None,
) -> PlantServer:
    """Start the test plant on localhost.

    Parameters
    ----------
    port : int, optional
        TCP port; a free one when omitted.
    layout : dict, optional
        ``{site: {line: [machine, ...]}}``; default one site ``north``, line ``l1``, machines ``cnc-01``, ``press-02``.
    extra_vars_per_machine : int
        Extra Double variables ``Extra0000``.. per machine (for tests with many nodes).
    users : dict, optional
        Username -> password; when given, anonymous login is refused.
    secure : (cert_path, key_path), optional
        Server certificate and key: adds a Basic256Sha256 SignAndEncrypt endpoint (None stays too).
    """
    layout = layout or {"north": {"l1": ["cnc-01", "press-02"]}}
    port = port or free_port()
    if users is not None:
        from asyncua.server.user_managers import UserManager

        class _Users(UserManager):
            def get_user(self, iserver, username=None, password=None, certificate=None):
                from asyncua.crypto.permission_rules import User, UserRole

                if username is not None and users.get(username) == password:
                    return User(role=UserRole.User)
                return None

        server = Server(user_manager=_Users())
    else:
        server = Server()
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{port}/wattline/"
    server.set_endpoint(endpoint)
    server.set_server_name("Wattline test plant")
    if secure:
        await server.load_certificate(secure[0])
        await server.load_private_key(secure[1])
        server.set_security_policy(
            [ua.SecurityPolicyType.NoSecurity, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        )
    if users is not None:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    if extra_ns:
        await server.register_namespace(extra_ns)  # moves the plant's namespace index, as a restart may
    ns = await server.register_namespace(NS_URI)
    enum_node = await new_enum(server, ns, "MachineStateEnum", ["Off", "Idle", "Running", "Fault"])
    await server.load_data_type_definitions()
    plant = await server.nodes.objects.add_folder(ua.NodeId("Plant", ns), ua.QualifiedName("Plant", ns))
    result = PlantServer(server, endpoint, ns)
    for site, lines in layout.items():
        site_node = await plant.add_object(ua.NodeId(site, ns), ua.QualifiedName(site, ns))
        temp = await site_node.add_variable(
            ua.NodeId(f"{site}/OutdoorTemperature", ns), ua.QualifiedName("OutdoorTemperature", ns), 12.5,
            ua.VariantType.Double,
        )
        await temp.add_property(ns, "EngineeringUnits", eu_information("°C"))
        result.variables[f"{site}/OutdoorTemperature"] = temp
        for line, machines in lines.items():
            line_node = await site_node.add_object(ua.NodeId(f"{site}/{line}", ns), ua.QualifiedName(line, ns))
            for machine in machines:
                base = f"{site}/{line}/{machine}"
                m_node = await line_node.add_object(ua.NodeId(base, ns), ua.QualifiedName(machine, ns))
                for name, vtype, value, unit in MACHINE_VARS:
                    var = await m_node.add_variable(
                        ua.NodeId(f"{base}/{name}", ns), ua.QualifiedName(name, ns), value, vtype
                    )
                    if unit:
                        await var.add_property(ns, "EngineeringUnits", eu_information(unit))
                    result.variables[f"{base}/{name}"] = var
                state = await m_node.add_variable(
                    ua.NodeId(f"{base}/MachineState", ns), ua.QualifiedName("MachineState", ns), 2,
                    datatype=enum_node.nodeid,
                )
                result.variables[f"{base}/MachineState"] = state
                for i in range(extra_vars_per_machine):
                    var = await m_node.add_variable(
                        ua.NodeId(f"{base}/Extra{i:04d}", ns), ua.QualifiedName(f"Extra{i:04d}", ns), 0.0,
                        ua.VariantType.Double,
                    )
                    result.variables[f"{base}/Extra{i:04d}"] = var
    await server.start()
    return result


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` [s]; return whether it became true (``tests.support``'s helper)."""
    from tests.support import wait_for_async  # here: this module also runs as a server outside pytest

    return bool(await wait_for_async(predicate, timeout, "the condition", interval, fail=False))
