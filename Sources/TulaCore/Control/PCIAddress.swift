// A PCI device address (`0000:3b:00.0` or the short `3b:00.0`), parsed from a config's device string and normalized.

/// A PCI address in the domain form sysfs uses (`dddd:bb:ss.f`, lower-case hex).
public struct PCIAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var domain: UInt16
    public var bus: UInt8
    public var slot: UInt8
    public var function: UInt8

    /// Parses `dddd:bb:ss.f` or `bb:ss.f` (hex, either case; domain 0 when absent; function 0...7).
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3 else { return nil }
        let slotFunction = parts[parts.count - 1].split(separator: ".", omittingEmptySubsequences: false)
        guard slotFunction.count == 2,
              let bus = PCIAddress.hex(parts[parts.count - 2], digits: 2).map(UInt8.init),
              let slot = PCIAddress.hex(slotFunction[0], digits: 2).map(UInt8.init),
              let function = PCIAddress.hex(slotFunction[1], digits: 1), function <= 7 else { return nil }
        var domain = 0
        if parts.count == 3 {
            guard let value = PCIAddress.hex(parts[0], digits: 4) else { return nil }
            domain = value
        }
        self.domain = UInt16(domain)
        self.bus = bus
        self.slot = slot
        self.function = UInt8(function)
    }

    /// The PCI address a DPDK device string names (the part before the first comma), or nil for a vdev.
    public init?(device: String) {
        self.init(String(device.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""))
    }

    /// `dddd:bb:ss.f`, as under `/sys/bus/pci/devices`.
    public var description: String {
        PCIAddress.pad(Int(domain), 4) + ":" + PCIAddress.pad(Int(bus), 2) + ":" + PCIAddress.pad(Int(slot), 2) + "."
            + String(function, radix: 16)
    }

    public static func < (a: PCIAddress, b: PCIAddress) -> Bool {
        (a.domain, a.bus, a.slot, a.function) < (b.domain, b.bus, b.slot, b.function)
    }

    /// Exactly `digits` hex digits, or nil.
    private static func hex(_ text: Substring, digits: Int) -> Int? {
        guard text.count == digits, text.allSatisfy(\.isHexDigit) else { return nil }
        return Int(text, radix: 16)
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
}
