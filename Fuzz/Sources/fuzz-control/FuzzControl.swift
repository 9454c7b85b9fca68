// libFuzzer entry for the control target: hands each input to FuzzTargets.control.
import TulaFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTargets.control(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
