// libFuzzer entry for the frame target: hands each input to FuzzTargets.frame.
import TulaFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTargets.frame(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
