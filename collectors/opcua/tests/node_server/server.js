// An independent OPC UA server (node-opcua) shaped like Wattline's simulated plant, for interoperability tests and
// the collector benchmark.
//
// usage: node server.js --port P [--machines N] [--extra K] [--period MS] [--pki DIR] [--user NAME --password PW]
//                       [--max-notifications N] [--filter-vars]
//                       [--policies P,P] [--modes M,M] [--user-pki DIR --trust-user-cert F,F]
//                       [--reject-unknown-clients]
//
// Address space: Objects/Plant/north/l1/m<i> with String NodeIds ns=<idx>;s=north/l1/m<i>/<Name> in namespace
// urn:wattline:simulator: ActivePower [kW], ActiveEnergy [kWh], MaterialId (String), MaterialConsumed [kg] and
// Extra0000.. (Double) per machine. Every `period` ms each variable gets a new value with a source timestamp; the
// value of ExtraXXXX is a running sequence number so that tests can count exactly. Endpoints: None/None (anonymous
// and username) and Basic256Sha256/SignAndEncrypt (username). Prints "READY <endpoint>" when serving.
// --policies / --modes replace the offered security policies (SecurityPolicy names, e.g. Aes256_Sha256_RsaPss) and
// modes (None, Sign, SignAndEncrypt). --user-pki DIR keeps X509 user-token certificates apart from the application
// PKI; the DER certificate files given to --trust-user-cert are trusted for certificate login, others are
// refused (BadIdentityTokenRejected). --reject-unknown-clients refuses client application certificates that are not in
// <pki>/server/trusted/certs (node-opcua saves them to <pki>/server/rejected); by default every one is accepted.
//
// --filter-vars adds Objects/Plant/north/l1/filters with known step patterns for deadband and trigger tests (tick t
// counts periods): Step (Double, no EURange) = t; StepAnalog (AnalogItem, EURange 0..200) = t; Trigger (Double) =
// floor(t/2) with status Good when floor(t/4) is even, else UncertainLastUsableValue, and a new source timestamp
// every tick; State (the standard enumeration ServerState) = t % 4.
"use strict";
const path = require("path");
const fs = require("fs");
const os = require("os");
const {
  OPCUAServer, Variant, DataType, StatusCodes, MessageSecurityMode, SecurityPolicy, OPCUACertificateManager,
  standardUnits, Subscription,
} = require("node-opcua");

function arg(name, dflt) {
  const i = process.argv.indexOf("--" + name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

async function main() {
  const port = parseInt(arg("port", "4840"), 10);
  const machines = parseInt(arg("machines", "2"), 10);
  const extra = parseInt(arg("extra", "0"), 10);
  const period = parseInt(arg("period", "200"), 10);
  const pki = arg("pki", path.join(os.tmpdir(), "wattline-node-opcua-pki"));
  const user = arg("user", "wattline");
  const password = arg("password", "secret");
  // node-opcua caps every NotificationMessage at 1,000 notifications (Subscription.maxNotificationPerPublishHighLimit);
  // the benchmark raises it so that a client with one PublishRequest in flight is not limited by the cap alone.
  const maxNotifications = parseInt(arg("max-notifications", "0"), 10);
  if (maxNotifications > 0) Subscription.maxNotificationPerPublishHighLimit = maxNotifications;

  const policies = arg("policies", "None,Basic256Sha256").split(",").map((p) => SecurityPolicy[p]);
  const modes = arg("modes", "None,SignAndEncrypt").split(",").map((m) => MessageSecurityMode[m]);
  if (policies.includes(undefined) || modes.includes(undefined)) throw new Error("unknown --policies or --modes name");
  const userPki = arg("user-pki", null);
  const userCertificateManager = userPki
    ? new OPCUACertificateManager({ automaticallyAcceptUnknownCertificate: false, rootFolder: userPki })
    : undefined;

  const serverCertificateManager = new OPCUACertificateManager({
    automaticallyAcceptUnknownCertificate: !process.argv.includes("--reject-unknown-clients"),
    rootFolder: path.join(pki, "server"),
  });
  const server = new OPCUAServer({
    port,
    resourcePath: "/wattline",
    serverCertificateManager,
    securityPolicies: policies,
    securityModes: modes,
    userCertificateManager,
    allowAnonymous: true,
    userManager: { isValidUser: (u, p) => u === user && p === password },
    maxConnectionsPerEndpoint: 20,
    serverCapabilities: {
      maxMonitoredItemsPerSubscription: 200000,
      operationLimits: { maxMonitoredItemsPerCall: 1000, maxNodesPerRead: 1000, maxNodesPerBrowse: 1000 },
    },
  });
  await server.initialize();
  if (userCertificateManager) {
    for (const file of arg("trust-user-cert", "").split(",").filter((f) => f)) {
      await userCertificateManager.trustCertificate(fs.readFileSync(file));
    }
  }
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace("urn:wattline:simulator");
  const plant = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Plant", nodeId: "s=Plant" });
  const site = ns.addObject({ organizedBy: plant, browseName: "north", nodeId: "s=north" });
  const line = ns.addObject({ organizedBy: site, browseName: "l1", nodeId: "s=north/l1" });
  const updaters = [];
  let seq = 0;
  for (let m = 0; m < machines; m++) {
    const name = `m${m}`;
    const base = `north/l1/${name}`;
    const machine = ns.addObject({ organizedBy: line, browseName: name, nodeId: `s=${base}` });
    const power = ns.addAnalogDataItem({
      componentOf: machine, browseName: "ActivePower", nodeId: `s=${base}/ActivePower`, dataType: "Double",
      engineeringUnits: standardUnits.kilowatt, engineeringUnitsRange: { low: 0, high: 1000 },
    });
    const energy = ns.addAnalogDataItem({
      componentOf: machine, browseName: "ActiveEnergy", nodeId: `s=${base}/ActiveEnergy`, dataType: "Double",
      engineeringUnits: standardUnits.kilowatt_hour, engineeringUnitsRange: { low: 0, high: 1e9 },
    });
    const materialId = ns.addVariable({
      componentOf: machine, browseName: "MaterialId", nodeId: `s=${base}/MaterialId`, dataType: "String",
      value: { dataType: DataType.String, value: "steel-s235" },
    });
    const consumed = ns.addVariable({
      componentOf: machine, browseName: "MaterialConsumed", nodeId: `s=${base}/MaterialConsumed`, dataType: "Double",
      value: { dataType: DataType.Double, value: 0 },
    });
    const extras = [];
    for (let k = 0; k < extra; k++) {
      const id = String(k).padStart(4, "0");
      extras.push(ns.addVariable({
        componentOf: machine, browseName: `Extra${id}`, nodeId: `s=${base}/Extra${id}`, dataType: "Double",
        value: { dataType: DataType.Double, value: 0 },
      }));
    }
    let kwh = 1000;
    updaters.push((now) => {
      const kw = 50 + 10 * Math.sin(now.getTime() / 10000 + m);
      kwh += (kw * period) / 3600000;
      power.setValueFromSource(new Variant({ dataType: DataType.Double, value: kw }), StatusCodes.Good, now);
      energy.setValueFromSource(new Variant({ dataType: DataType.Double, value: kwh }), StatusCodes.Good, now);
      consumed.setValueFromSource(new Variant({ dataType: DataType.Double, value: kwh / 10 }), StatusCodes.Good, now);
      for (const v of extras) {
        seq += 1;
        v.setValueFromSource(new Variant({ dataType: DataType.Double, value: seq }), StatusCodes.Good, now);
      }
    });
    void materialId;
  }
  if (process.argv.includes("--filter-vars")) {
    const folder = ns.addObject({ organizedBy: line, browseName: "filters", nodeId: "s=north/l1/filters" });
    const fid = (name) => `s=north/l1/filters/${name}`;
    const dbl = (v) => ({ dataType: DataType.Double, value: v });
    const step = ns.addVariable({ componentOf: folder, browseName: "Step", nodeId: fid("Step"), dataType: "Double",
      value: dbl(0) });
    const stepAnalog = ns.addAnalogDataItem({ componentOf: folder, browseName: "StepAnalog", nodeId: fid("StepAnalog"),
      dataType: "Double", engineeringUnitsRange: { low: 0, high: 200 }, value: dbl(0) });
    const trigger = ns.addVariable({ componentOf: folder, browseName: "Trigger", nodeId: fid("Trigger"),
      dataType: "Double", value: dbl(0) });
    const state = ns.addVariable({ componentOf: folder, browseName: "State", nodeId: fid("State"),
      dataType: "ServerState", value: { dataType: DataType.Int32, value: 0 } });
    let tick = 0;
    updaters.push((now) => {
      tick += 1;
      state.setValueFromSource(new Variant({ dataType: DataType.Int32, value: tick % 4 }), StatusCodes.Good, now);
      step.setValueFromSource(new Variant(dbl(tick)), StatusCodes.Good, now);
      stepAnalog.setValueFromSource(new Variant(dbl(tick)), StatusCodes.Good, now);
      const status = Math.floor(tick / 4) % 2 === 0 ? StatusCodes.Good : StatusCodes.UncertainLastUsableValue;
      trigger.setValueFromSource(new Variant(dbl(Math.floor(tick / 2))), status, now);
    });
  }
  await server.start();
  setInterval(() => {
    const now = new Date();
    for (const u of updaters) u(now);
  }, period);
  const endpoint = `opc.tcp://127.0.0.1:${port}/wattline`;
  const cert = serverCertificateManager.rootDir;
  // Tests acting as the server's administrator wait for this line before moving a rejected certificate: node-opcua
  // keeps rejected certificates in memory and can forget one only if its folder watcher saw the file (moved earlier,
  // it stays rejected although it is in trusted/certs, and "rejected" wins).
  serverCertificateManager.on("certificateAdded", ({ store, filename }) => {
    process.stdout.write(`CERTIFICATE ${store} ${path.basename(filename)}\n`);
  });
  process.stdout.write(`READY ${endpoint} ${cert}\n`);
  const stop = async () => { await server.shutdown(100); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => { console.error(err); process.exit(1); });
