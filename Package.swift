// swift-tools-version:6.2
// The telematics unit simulator: a pure core, thin adapters over the C libraries of a Linux
// head unit, and thin executables. See docs/architecture.md.
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "telematics-unit",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "telematicsd", targets: ["telematicsd"]),
        .executable(name: "tcuctl", targets: ["tcuctl"]),
        .executable(name: "tcu-psap", targets: ["tcu-psap"]),
        .executable(name: "tcu-backend", targets: ["tcu-backend"]),
        .executable(name: "tcu-car", targets: ["tcu-car"]),
        .executable(name: "tcu-fleet", targets: ["tcu-fleet"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // The reference backend's password and S-PIN hashes (PBKDF2); the car's command keys later.
        .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
        // The reference backend's HTTP server (keep-alive, limits, graceful shutdown, streaming for live alerts).
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        // Hummingbird's own: the event loops, and the HTTP parts a channel handler sees.
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-extras", exact: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", exact: "1.8.0"),
        // The web portal's server-side templates.
        .package(url: "https://github.com/hummingbird-project/swift-mustache", exact: "2.1.1"),
    ],
    targets: [
        // Pure domain: standard library only, no Foundation, no IO.
        .target(name: "TelematicsCore", swiftSettings: strict),

        // The one way to reach the system: the syscall chokepoint (errno to a typed error), clocks,
        // durable file writes, the thread type, one-shot replies. Every adapter stands on it.
        .systemLibrary(name: "CPlatform"),
        .target(name: "Platform", dependencies: ["TelematicsCore", "CPlatform"], swiftSettings: strict),

        // AF_CAN headers and libsocketcan (interface state, bus-off restart).
        .systemLibrary(
            name: "CSocketCAN",
            pkgConfig: "libsocketcan",
            providers: [.apt(["libsocketcan-dev"])]
        ),

        .target(
            name: "VehicleBus",
            dependencies: ["TelematicsCore", "Platform", "CSocketCAN"],
            swiftSettings: strict
        ),
        // libre (baresip's SIP, SDP and RTP library: Debian's libre0, headers in libre-dev) for NG-eCall.
        .systemLibrary(name: "CLibre", pkgConfig: "libre", providers: [.apt(["libre-dev"])]),
        // libsqlite3 for the durable outbox.
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // The durable outbox: SQLite in WAL mode with synchronous=FULL.
        .target(name: "Outbox", dependencies: ["TelematicsCore", "CSQLite"], swiftSettings: strict),

        // libmosquitto, and the backend link on it (MQTT, QoS 1).
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .target(name: "BackendLink", dependencies: ["TelematicsCore", "CMosquitto"], swiftSettings: strict),
        // libcurl: the reference backend's mail over SMTP (verification, password reset).
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // libpq: the reference backend's store on PostgreSQL when given a postgresql:// URL.
        .systemLibrary(name: "CPostgres", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // Routino (routes on an OpenStreetMap extract) and libxml2 (DATEX II traffic records):
        // the Online infotainment services the reference backend answers.
        .systemLibrary(name: "CRoutino", providers: [.apt(["libroutino-dev"])]),
        .systemLibrary(name: "CLibXML2", pkgConfig: "libxml-2.0", providers: [.apt(["libxml2-dev"])]),
        .target(name: "OnlineServices", dependencies: ["TelematicsCore", "Platform", "CRoutino", "CLibXML2"], swiftSettings: strict),
        // The reference backend's vehicle side behind tcu-backend.
        .target(
            name: "Backend",
            dependencies: [
                "TelematicsCore", "Platform", "Outbox", "BackendLink", "CCurl", "CPostgres", "OnlineServices",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),

        // libgps: the gpsd client library.
        .systemLibrary(name: "CGPS", providers: [.apt(["libgps-dev"])]),  // loaded at run time: see shim.h
        // HMAC-SHA256 for the remote commands' signatures (libcrypto: libmosquitto loads it anyway).
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // A car's cryptography (a command's HMAC, the backend's signature on answers): units and fleet cars.
        .target(name: "CarCrypto", dependencies: ["TelematicsCore", "COpenSSL"], swiftSettings: strict),
        // Position from gpsd (its own thread, reconnects).
        .target(name: "GNSS", dependencies: ["TelematicsCore", "CGPS"], swiftSettings: strict),

        // The daemon's configuration: one table of keys, parsed and checked (pure, like the core).
        .target(name: "UnitConfiguration", dependencies: ["TelematicsCore"], swiftSettings: strict),

        // The control protocol, both sides: tcuctl's client, and the server the daemon and the
        // simulated car answer on. It links neither the daemon nor its C libraries.
        .target(
            name: "Control",
            dependencies: [
                "TelematicsCore", "Platform",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // The eCall's own link to the network (simulator): no disk, no backend.
        .target(name: "ECallLink", dependencies: ["TelematicsCore", "Platform"], swiftSettings: strict),
        // NG-eCall: the eCall over SIP (RFC 8147) on libre, beside the circuit-switched link.
        .target(name: "ECallSIP", dependencies: ["TelematicsCore", "Platform", "CLibre"], swiftSettings: strict),
        // The PSAP and network simulator behind tcu-psap.
        .target(name: "PSAP", dependencies: ["TelematicsCore", "Platform", "ECallLink", "ECallSIP", "CLibre"], swiftSettings: strict),
        .target(
            name: "TelematicsDaemon",
            dependencies: [
                "TelematicsCore", "UnitConfiguration", "Platform", "Control", "VehicleBus", "ECallLink", "ECallSIP", "Outbox", "BackendLink",
                "GNSS", "CarCrypto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The simulated car's shell: its loop, bus, gpsd feed and control (the models are in the core).
        .target(
            name: "VehicleSim",
            dependencies: [
                "TelematicsCore", "UnitConfiguration", "Platform", "VehicleBus",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "tcu-car",
            dependencies: [
                "VehicleSim", "TelematicsCore", "Platform", "Control", "VehicleBus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // A fleet in one process: many cars, one epoll loop over their broker connections, one
        // outbox file (docs/fleet.md).
        .target(
            name: "Fleet",
            dependencies: ["TelematicsCore", "Platform", "CPlatform", "Outbox", "CMosquitto", "COpenSSL", "CLibXML2", "CarCrypto", "CCurl"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "tcu-fleet",
            dependencies: [
                "Fleet", "TelematicsCore", "Platform",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "telematicsd",
            dependencies: [
                "TelematicsDaemon", "TelematicsCore", "UnitConfiguration", "Platform",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "tcuctl",
            dependencies: [
                "TelematicsCore", "Platform", "Control", "VehicleBus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // The web portal (MySEAT): pages from Mustache templates over the app API, testable
        // without a socket like AppAPI.
        .target(
            name: "WebPortal",
            dependencies: [
                "Backend", "TelematicsCore",
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // The app API and the web portal over HTTP: Hummingbird 2 around AppAPI (which stays free of it and testable
        // without a socket).
        .target(
            name: "BackendHTTP",
            dependencies: [
                "Backend", "WebPortal", "TelematicsCore", "Platform",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "tcu-backend",
            dependencies: [
                "Backend", "OnlineServices", "BackendHTTP", "WebPortal", "BackendLink", "TelematicsCore", "Platform",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "tcu-psap",
            dependencies: [
                "PSAP", "ECallLink", "TelematicsCore", "Platform",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "tcu-bench",
            dependencies: [
                "TelematicsCore", "Platform", "VehicleBus", "TelematicsDaemon", "ECallLink", "ECallSIP", "Outbox",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),

        // Every parser that sees outside input as a function of bytes: libFuzzer's entry point
        // (`make fuzz` builds tcu-fuzz with --sanitize=fuzzer) and the corpus regression tests.
        .target(name: "FuzzTargets", dependencies: ["TelematicsCore", "UnitConfiguration", "Backend", "OnlineServices", "WebPortal", "Fleet"], swiftSettings: strict),
        .executableTarget(name: "tcu-fuzz", dependencies: ["FuzzTargets"], swiftSettings: strict),

        .testTarget(name: "TelematicsCoreTests", dependencies: ["TelematicsCore"], swiftSettings: strict),
        .testTarget(name: "FuzzTargetsTests", dependencies: ["FuzzTargets"], swiftSettings: strict),
        .testTarget(name: "OutboxTests", dependencies: ["Outbox", "Backend", "WebPortal", "TelematicsCore"], swiftSettings: strict),
        .testTarget(name: "PlatformTests", dependencies: ["Platform"], swiftSettings: strict),
        .testTarget(name: "OnlineServicesTests", dependencies: ["OnlineServices", "TelematicsCore"], swiftSettings: strict),
        .testTarget(name: "VehicleBusTests", dependencies: ["VehicleBus", "Platform", "TelematicsCore"], swiftSettings: strict),
        .testTarget(
            name: "TelematicsDaemonTests",
            dependencies: ["TelematicsDaemon", "TelematicsCore", "UnitConfiguration", "Platform", "Control", "VehicleBus", "Outbox", "ECallSIP"],
            swiftSettings: strict
        ),
    ]
)
