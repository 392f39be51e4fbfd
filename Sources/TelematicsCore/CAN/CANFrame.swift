/// One CAN or CAN FD frame as it travels on the bus, with the time it was received.
///
/// The identifier is kept without the kernel's flag bits; `isExtended`, `isRemote`,
/// `isError` and `isFD` say what kind of frame it is.
public struct CANFrame: Hashable, Sendable {
    /// 11-bit (standard) or 29-bit (extended) identifier. For error frames, the error class bits.
    public var id: UInt32
    public var isExtended: Bool
    public var isRemote: Bool
    public var isError: Bool
    public var isFD: Bool
    /// CAN FD bit rate switch and error state indicator (flags nibble in candump logs).
    public var bitRateSwitch: Bool
    public var errorStateIndicator: Bool
    /// Payload: 0...8 bytes (classic), or one of the CAN FD lengths up to 64.
    public var data: [UInt8]
    /// For a remote frame, the requested length.
    public var remoteLength: Int
    public var timestamp: Timestamp
    public var interface: String

    public init(
        id: UInt32, data: [UInt8], isExtended: Bool? = nil, isRemote: Bool = false,
        isError: Bool = false, isFD: Bool = false, bitRateSwitch: Bool = false,
        errorStateIndicator: Bool = false, remoteLength: Int = 0,
        timestamp: Timestamp = .zero, interface: String = "can0"
    ) {
        self.id = id
        self.data = data
        self.isExtended = isExtended ?? (id > 0x7FF)
        self.isRemote = isRemote
        self.isError = isError
        self.isFD = isFD
        self.bitRateSwitch = bitRateSwitch
        self.errorStateIndicator = errorStateIndicator
        self.remoteLength = remoteLength
        self.timestamp = timestamp
        self.interface = interface
    }

    /// The CAN FD payload lengths; a frame of another length is padded to the next one.
    public static let fdLengths = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64]

    /// The identifier as a DBC file writes it (bit 31 set for extended frames).
    public var dbcID: UInt32 { isExtended ? id | 0x8000_0000 : id }
}
