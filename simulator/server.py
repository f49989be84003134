"""Serve the simulated plant over OPC UA (asyncua).

Address space (the collector's ``discover`` relies on it)::

    Objects/Plant                                   FolderType, namespace urn:wattline:simulator
      <site>                                        FolderType  ns=<idx>;s=<site>
        OutdoorTemperature                          AnalogItemType [°C]  ns=<idx>;s=<site>/OutdoorTemperature
        <line>                                      FolderType  ns=<idx>;s=<site>/<line>
          <machine>                                 BaseObjectType  ns=<idx>;s=<site>/<line>/<machine>
            ActivePower [kW], ActiveEnergy [kWh], PowerFactor [1]       AnalogItemType (Double)
            MachineState                            MachineStateEnum (0 Off, 1 Idle, 2 Running, 3 Fault)
            GoodCount, ScrapCount [units]           AnalogItemType (Double), production machines
            MaterialConsumed [kg], MaterialId       AnalogItemType (Double) / String, production machines
            AirFlow [m3/min]                        compressors (delivered) and machines that use air
            ReceiverPressure [bar]                  compressors

Every variable is updated each simulated step (1 s at speed 1). Source timestamps are *simulated* time: at speed 1
that is wall-clock time; with ``speed > 1`` the simulated clock starts now and runs ahead, so source timestamps move
into the future while server timestamps stay wall-clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from asyncua import Server, ua
from asyncua.server.user_managers import UserManager

from simulator.engine import NS, Block, Simulation
from simulator.errors import PortInUseError, SimulatorError
from simulator.plant import PRODUCTION_ARCHETYPES, Plant, default_plant
from simulator.scenario import ScenarioSpec
from simulator.timeline import DAY_S

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:wattline:simulator"
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
#: Steps [s] that divide a day; the server picks the smallest one its update rate allows.
_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900)
STATE_NAMES = ("Off", "Idle", "Running", "Fault")


@dataclass(frozen=True)
class Unit:
    code: str  # UNECE common code
    symbol: str
    description: str

    def eu_information(self) -> ua.EUInformation:
        c = self.code.ljust(3)
        unit_id = (ord(c[0]) << 16) | (ord(c[1]) << 8) | ord(c[2])
        return ua.EUInformation(NamespaceUri=UNECE_NAMESPACE, UnitId=unit_id, DisplayName=ua.LocalizedText(self.symbol),
                                Description=ua.LocalizedText(self.description))


UNITS = {
    "kW": Unit("KWT", "kW", "kilowatt"),
    "kWh": Unit("KWH", "kWh", "kilowatt hour"),
    "1": Unit("C62", "1", "one (dimensionless)"),
    "units": Unit("H87", "pcs", "piece"),
    "kg": Unit("KGM", "kg", "kilogram"),
    "m3/min": Unit("G53", "m³/min", "cubic metre per minute"),
    "bar": Unit("BAR", "bar", "bar"),
    "°C": Unit("CEL", "°C", "degree Celsius"),
}


@dataclass(frozen=True)
class SecuritySettings:
    """Secured endpoint settings.

    Parameters
    ----------
    modes : tuple of str
        Any of ``"None"``, ``"Sign"``, ``"SignAndEncrypt"`` (Basic256Sha256 for the secured ones).
    cert_dir : Path
        Folder where the server's key and self-signed certificate are generated at start (kept if valid).
    users : dict
        Username -> password; when given, anonymous login is refused.
    """

    modes: tuple[str, ...] = ("SignAndEncrypt",)
    cert_dir: Path = Path("certs")
    users: tuple[tuple[str, str], ...] = ()


class _Users(UserManager):
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None):
        from asyncua.crypto.permission_rules import User, UserRole

        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


def choose_step(speed: float, min_period_s: float = 0.25) -> int:
    """Smallest simulated step [s] (a divisor of a day) whose real update period is at least ``min_period_s``."""
    for step in _STEPS:
        if step / speed >= min_period_s - 1e-9:
            return step
    return _STEPS[-1]


class PlantServer:
    """An asyncio OPC UA server that exposes a simulated plant.

    Use as ``async with PlantServer(plant) as server: ...`` or ``await server.start()`` / ``await server.stop()``.

    Parameters
    ----------
    plant : Plant, optional
        The plant; the shipped default plant when None.
    scenario : ScenarioSpec, optional
        Injected waste; the shipped default scenario when None.
    speed : float
        Simulated seconds per real second (1 = real time, 60 = one simulated hour per real minute).
    host : str
        Interface to listen on.
    port : int
        TCP port; 0 picks a free one (read it back from :attr:`endpoint`).
    seed : int
        Random seed of the simulation.
    security : SecuritySettings, optional
        Secured endpoint (Basic256Sha256 Sign / SignAndEncrypt, username login); unsecured when None.
    truth_path : path, optional
        Where to write the ground-truth manifest (JSON) every simulated hour and on stop.
    intensity : float, optional
        Fixed waste intensity (skips the start-up calibration).
    """

    def __init__(self, plant: Plant | None = None, scenario: ScenarioSpec | None = None, speed: float = 1.0,
                 host: str = "127.0.0.1", port: int = 4840, seed: int = 0, security: SecuritySettings | None = None,
                 truth_path: str | Path | None = None, intensity: float | None = None,
                 registers: dict[str, float] | None = None) -> None:
        if not speed > 0:
            raise SimulatorError(f"speed must be positive, got {speed}; 1 is real time, 60 is one hour per minute")
        self.plant = plant if plant is not None else default_plant()
        self.scenario = scenario
        self.speed = float(speed)
        self.host, self.port, self.seed = host, int(port), int(seed)
        self.security = security
        self.truth_path = Path(truth_path) if truth_path else None
        self.intensity = intensity
        self.registers = dict(registers or {})  # energy registers go on from these readings (Simulation.continue_registers)
        self.step_s = choose_step(self.speed)
        self.sim: Simulation | None = None
        self._server: Server | None = None
        self._task: asyncio.Task | None = None
        self._vars: list = []  # per machine: dict browse name -> NodeId
        self._site_vars: dict[str, ua.NodeId] = {}
        self.idx = 0
        self.updates = 0
        self.values_written = 0
        self.sim_time_ns = 0
        self._listeners: list = []

    def add_listener(self, callback) -> None:
        """Call ``callback(node_id, value, source_time)`` for every value the server publishes.

        ``node_id`` is the NodeId string (``ns=2;s=north/l1/cnc-01/ActivePower``), ``value`` the published value (None
        for a Bad value) and ``source_time`` the aware source timestamp. Used to check what reached a store against what
        was published (end-to-end tests, training).
        """
        self._listeners.append(callback)

    # -- lifecycle ----------------------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """The ``opc.tcp://host:port`` URL clients connect to."""
        return f"opc.tcp://{self.host}:{self.port}"

    async def __aenter__(self) -> PlantServer:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the address space, start listening and start the update loop.

        Raises
        ------
        PortInUseError
            When the port is taken.
        """
        if self.port == 0:
            self.port = _free_port(self.host)
        day = int(time.time() // DAY_S)
        self.sim = await asyncio.to_thread(Simulation, self.plant, self.scenario, self.seed, self.step_s, day, self.intensity)
        if self.registers:
            self.sim.continue_registers(self.registers)
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}/")
        server.set_server_name("Wattline plant simulator")
        await server.set_application_uri("urn:wattline:simulator:server")
        if self.security is not None:
            await self._secure(server)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.idx = await server.register_namespace(NAMESPACE_URI)
        await self._build(server)
        try:
            await server.start()
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES) or "address already in use" in str(exc).lower():
                raise PortInUseError(
                    f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}. Another program (perhaps another "
                    f"simulator) uses port {self.port}; stop it or pick a free port with --port (e.g. --port {self.port + 1})"
                ) from None
            raise SimulatorError(f"cannot start the OPC UA server on {self.host}:{self.port}: {exc}") from None
        self._server = server
        self._block: Block | None = None
        # The first step ends now: source timestamps track the wall clock at speed 1.
        t0 = np.floor(time.time() / self.step_s) * self.step_s - self.step_s
        self._day = int(t0 // DAY_S)
        self._t_in_day = t0 - self._day * DAY_S
        await self._tick()
        self._task = asyncio.create_task(self._loop(), name="wattline-simulator")
        log.info("simulator serving %d machines at %s (speed %g, step %d s)", len(self.plant), self.endpoint, self.speed, self.step_s)

    async def stop(self) -> None:
        """Stop updating, write the manifest (when asked) and close the server."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # stopping anyway
                await self._task
            self._task = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        self.write_truth()

    def write_truth(self) -> None:
        """Write the ground-truth manifest so far to ``truth_path`` (no-op without one)."""
        if self.truth_path is None or self.sim is None:
            return
        from simulator.truth import write_manifest

        write_manifest(self.sim.manifest(), self.truth_path)

    # -- security -------------------------------------------------------------------------------------------------------
    async def _secure(self, server: Server) -> None:
        from simulator.security import ensure_server_certificate

        sec = self.security
        assert sec is not None  # start() secures the server only when security settings were given
        policies = []
        names = {"None": ua.SecurityPolicyType.NoSecurity, "Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
                 "SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt}
        for mode in sec.modes:
            if mode not in names:
                raise SimulatorError(f"security mode {mode!r} is not valid; valid options: {', '.join(names)}")
            policies.append(names[mode])
        key, cert = await ensure_server_certificate(Path(sec.cert_dir), self.host)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy(policies)
        if sec.users:
            server.iserver.user_manager = _Users(dict(sec.users))
            server.set_security_IDs(["Username"])

    # -- address space --------------------------------------------------------------------------------------------------
    async def _build(self, server: Server) -> None:
        idx = self.idx
        enum = await server.nodes.enum_data_type.add_data_type(_nid("MachineStateEnum", idx), ua.QualifiedName("MachineStateEnum", idx))
        edef = ua.EnumDefinition()
        for value, name in enumerate(STATE_NAMES):
            edef.Fields.append(ua.EnumField(Value=value, DisplayName=ua.LocalizedText(name), Name=name,
                                            Description=ua.LocalizedText(f"machine {name.lower()}")))
        await enum.write_data_type_definition(edef)
        await enum.add_property(0, "EnumStrings", ua.Variant([ua.LocalizedText(n) for n in STATE_NAMES], ua.VariantType.LocalizedText))
        self._enum = enum.nodeid
        items: list[ua.AddNodesItem] = []
        plant_id = _nid("Plant", idx)
        items.append(_object(plant_id, _nid(ua.ObjectIds.ObjectsFolder), "Plant", self.plant.name, idx, folder=True))
        now = dt.datetime.now(dt.UTC)
        self._vars = [None] * len(self.plant)
        for site in self.plant.sites:
            site_id = _nid(site.id, idx)
            items.append(_object(site_id, plant_id, site.id, site.name or site.id, idx, folder=True))
            tid = _nid(f"{site.id}/OutdoorTemperature", idx)
            items += _analog(tid, site_id, "OutdoorTemperature", idx, "°C", (-40.0, 50.0), 10.0, ua.VariantType.Double, now,
                             "Outdoor air temperature at the site")
            self._site_vars[site.id] = tid
            for line in site.lines:
                line_id = _nid(f"{site.id}/{line.id}", idx)
                items.append(_object(line_id, site_id, line.id, line.name or line.id, idx, folder=True))
        for ref in self.plant.machines:
            path = ref.path
            line_id = _nid(f"{ref.site.id}/{ref.line.id}", idx)
            mid = _nid(path, idx)
            items.append(_object(mid, line_id, ref.spec.id, ref.spec.display_name, idx, folder=False))
            items.append(_property(_nid(f"{path}/Archetype", idx), mid, "Archetype", idx, ua.Variant(ref.archetype, ua.VariantType.String)))
            items.append(_property(_nid(f"{path}/RatedPower", idx), mid, "RatedPower", idx, ua.Variant(ref.spec.rated_kw, ua.VariantType.Double)))
            nodes: dict[str, ua.NodeId] = {}
            rated = ref.spec.rated_kw
            add = functools.partial(_add_analog, items, nodes, path, mid, idx, now)

            add("ActivePower", "kW", (0.0, round(rated * 2.5, 3)), "Active power, mean over the last step")
            assert ref.spec.register_max_kwh is not None  # the simulator Plant completes every machine's register size
            add("ActiveEnergy", "kWh", (0.0, ref.spec.register_max_kwh), "Active energy import register (rolls over)")
            add("PowerFactor", "1", (0.0, 1.0), "Displacement power factor")
            sid = _nid(f"{path}/MachineState", idx)
            items.append(_variable(sid, mid, "MachineState", idx, ua.Variant(0, ua.VariantType.Int32), self._enum, now,
                                   "Machine state: 0 Off, 1 Idle, 2 Running, 3 Fault"))
            nodes["MachineState"] = sid
            if ref.archetype in PRODUCTION_ARCHETYPES:
                add("GoodCount", "units", (0.0, 1e9), "Good parts produced (counter)")
                add("ScrapCount", "units", (0.0, 1e9), "Scrapped parts (counter)")
                add("MaterialConsumed", "kg", (0.0, 1e9), "Material consumed of the current material (counter per material)")
                nid = _nid(f"{path}/MaterialId", idx)
                items.append(_variable(nid, mid, "MaterialId", idx, ua.Variant("", ua.VariantType.String),
                                       _nid(ua.ObjectIds.String), now, "Material id of the current order"))
                nodes["MaterialId"] = nid
            if ref.archetype == "compressor" or (ref.archetype in PRODUCTION_ARCHETYPES and ref.sim.air_m3_min > 0):
                cap = ref.spec.capacity_m3_min if ref.archetype == "compressor" else ref.sim.air_m3_min * 1.5
                assert cap is not None  # the simulator Plant completes every compressor's capacity
                add("AirFlow", "m3/min", (0.0, cap), "Compressed air delivered (compressor) or used (machine)")
            if ref.archetype == "compressor":
                add("ReceiverPressure", "bar", (0.0, 10.0), "Air receiver pressure (gauge)")
            self._vars[ref.index] = nodes
        results = await server.iserver.isession.add_nodes(items)
        bad = [r for r in results if not r.StatusCode.is_good()]
        if bad:
            raise SimulatorError(f"building the address space failed for {len(bad)} nodes: {bad[0].StatusCode}")

    # -- updates --------------------------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        period = self.step_s / self.speed
        next_at = time.monotonic() + period
        last_truth = self.sim_time_ns
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += period
            if time.monotonic() - next_at > 5 * period:  # fell far behind (suspended laptop): skip ahead
                next_at = time.monotonic() + period
            await self._tick()
            if self.truth_path is not None and self.sim_time_ns - last_truth >= 3600 * NS:
                last_truth = self.sim_time_ns
                await asyncio.to_thread(self.write_truth)

    def _next_values(self):
        """Advance one step; render a new block of steps when the current one is used up."""
        if self._block is None or self._i >= self._block.n:
            if self._t_in_day >= DAY_S:
                self._day += 1
                self._t_in_day = 0.0
            t1 = min(DAY_S, self._t_in_day + max(600.0, self.step_s * 60))
            self._block = self.sim.render(self._day, self._t_in_day, t1)
            self._t_in_day = t1
            self._i = 0
        i = self._i
        self._i += 1
        return self._block, i

    async def _tick(self) -> None:
        block, i = self._next_values()
        ts_ns = int(block.times_ns[i])
        self.sim_time_ns = ts_ns
        source = dt.datetime.fromtimestamp(ts_ns / NS, dt.UTC)
        server_ts = dt.datetime.now(dt.UTC)
        assert self._server is not None  # ticks run between start() and stop()
        aspace_write = self._server.iserver.aspace.write_attribute_value
        if self._listeners:
            aspace_write = self._tapped(aspace_write)
        value_attr = ua.AttributeIds.Value
        good = _status(ua.StatusCodes.Good)
        bad = _status(ua.StatusCodes.BadNoCommunication)

        def dv(value, vtype, status=good):
            return ua.DataValue(ua.Variant(value, vtype), StatusCode=status, SourceTimestamp=source, ServerTimestamp=server_ts)

        D = ua.VariantType.Double
        written = 0

        async def write(nid, attr, value):
            nonlocal written
            written += 1
            await aspace_write(nid, attr, value)

        for site_id, nid in self._site_vars.items():
            await write(nid, value_attr, dv(round(float(block.temperature[site_id][i]), 2), D))
        for ref, sig in zip(self.plant.machines, block.machines):
            nodes = self._vars[ref.index]
            ok = sig.status[i] == 0
            st = good if ok else bad
            await write(nodes["ActivePower"], value_attr, dv(round(float(sig.power[i]), 3) if ok else None, D, st))
            await write(nodes["ActiveEnergy"], value_attr, dv(float(sig.energy[i]) if ok else None, D, st))
            await write(nodes["PowerFactor"], value_attr, dv(round(float(sig.pf[i]), 3) if ok else None, D, st))
            await write(nodes["MachineState"], value_attr, dv(int(sig.state[i]), ua.VariantType.Int32))
            if sig.good is not None:
                await write(nodes["GoodCount"], value_attr, dv(float(sig.good[i]), D))
                await write(nodes["ScrapCount"], value_attr, dv(float(sig.scrap[i]), D))
                mat = int(sig.material[i])
                if mat >= 0:
                    await write(nodes["MaterialConsumed"], value_attr, dv(round(float(sig.material_kg[i]), 3), D))
                    await write(nodes["MaterialId"], value_attr, dv(material_id(mat), ua.VariantType.String))
            if "AirFlow" in nodes and sig.flow is not None:
                await write(nodes["AirFlow"], value_attr, dv(round(float(sig.flow[i]), 3), D))
            if "ReceiverPressure" in nodes and sig.pressure is not None:
                await write(nodes["ReceiverPressure"], value_attr, dv(round(float(sig.pressure[i]), 3), D))
        self.updates += 1
        self.values_written += written


    def _tapped(self, write):
        async def tapped(node_id, attribute, data_value):
            for listener in self._listeners:
                listener(node_id.to_string(), data_value.Value.Value, data_value.SourceTimestamp)
            return await write(node_id, attribute, data_value)

        return tapped


def material_id(number: int) -> str:
    """Material id string of a material number (``MAT-012345``)."""
    return f"MAT-{int(number):06d}"


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _nid(identifier: int | str, namespace: int = 0) -> ua.NodeId:
    """A NodeId of a plain numeric or string identifier in ``namespace``."""
    # asyncua annotates NodeId's fields with its Int32/String/Int16 marker subclasses, yet takes (and itself passes)
    # plain int and str: a gap in its annotations, not a wrong call.
    return ua.NodeId(identifier, namespace)  # type: ignore[arg-type]


def _status(code: int) -> ua.StatusCode:
    """A StatusCode of one of ``ua.StatusCodes`` (plain ints; asyncua annotates the field with its UInt32 class)."""
    return ua.StatusCode(code)  # type: ignore[arg-type]


def _add_analog(items: list[ua.AddNodesItem], nodes: dict[str, ua.NodeId], path: str, parent: ua.NodeId, idx: int,
                now: dt.datetime, name: str, unit: str, rng: tuple[float, float], desc: str,
                vtype: ua.VariantType = ua.VariantType.Double, initial: float = 0.0) -> None:
    """Add one AnalogItem variable ``path/name`` of a machine, recording its NodeId in ``nodes``."""
    nid = _nid(f"{path}/{name}", idx)
    items.extend(_analog(nid, parent, name, idx, unit, rng, initial, vtype, now, desc))
    nodes[name] = nid


# -- node builders (one add_nodes call builds the whole plant, which keeps start-up fast for 500 machines) ------------
def _object(nid, parent, bname, display, idx, folder: bool) -> ua.AddNodesItem:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nid
    item.BrowseName = ua.QualifiedName(bname, idx)
    item.NodeClass = ua.NodeClass.Object
    item.ParentNodeId = parent
    item.ReferenceTypeId = _nid(ua.ObjectIds.Organizes if folder else ua.ObjectIds.HasComponent)
    item.TypeDefinition = _nid(ua.ObjectIds.FolderType if folder else ua.ObjectIds.BaseObjectType)
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText(display)
    attrs.Description = ua.LocalizedText(display)
    attrs.EventNotifier = 0
    item.NodeAttributes = attrs
    return item


def _variable(nid, parent, bname, idx, value: ua.Variant, datatype, now, desc, typedef=ua.ObjectIds.BaseDataVariableType,
              ref=ua.ObjectIds.HasComponent) -> ua.AddNodesItem:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nid
    item.BrowseName = ua.QualifiedName(bname, idx)
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    item.ReferenceTypeId = _nid(ref)
    item.TypeDefinition = _nid(typedef)
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(bname)
    attrs.Description = ua.LocalizedText(desc)
    attrs.DataType = datatype
    attrs.Value = value
    attrs.ValueRank = -1
    attrs.AccessLevel = ua.AccessLevel.CurrentRead.mask
    attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    attrs.Historizing = False
    item.NodeAttributes = attrs
    return item


def _property(nid, parent, bname, idx, value: ua.Variant) -> ua.AddNodesItem:
    dtype = _nid({ua.VariantType.String: ua.ObjectIds.String, ua.VariantType.Double: ua.ObjectIds.Double}.get(
        value.VariantType, ua.ObjectIds.BaseDataType))
    if isinstance(value.Value, ua.Range):
        dtype = _nid(ua.ObjectIds.Range)
    elif isinstance(value.Value, ua.EUInformation):
        dtype = _nid(ua.ObjectIds.EUInformation)
    return _variable(nid, parent, bname, idx if isinstance(idx, int) else 0, value, dtype, None, bname,
                     typedef=ua.ObjectIds.PropertyType, ref=ua.ObjectIds.HasProperty)


def _analog(nid, parent, bname, idx, unit, rng, initial, vtype, now, desc) -> list[ua.AddNodesItem]:
    dtype = _nid(ua.ObjectIds.Double if vtype == ua.VariantType.Double else ua.ObjectIds.UInt64)
    items = [_variable(nid, parent, bname, idx, ua.Variant(initial, vtype), dtype, now, desc, typedef=ua.ObjectIds.AnalogItemType)]
    base = nid.Identifier
    eu_range = ua.Range(Low=float(rng[0]), High=float(rng[1]))
    items.append(_property(_nid(f"{base}/EURange", idx), nid, "EURange", 0, ua.Variant(eu_range, ua.VariantType.ExtensionObject)))
    items.append(_property(_nid(f"{base}/EngineeringUnits", idx), nid, "EngineeringUnits", 0,
                           ua.Variant(UNITS[unit].eu_information(), ua.VariantType.ExtensionObject)))
    return items
