// libFuzzer entry for the pcap target: hands each input to FuzzTargets.pcap.
import TulaFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTargets.pcap(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
