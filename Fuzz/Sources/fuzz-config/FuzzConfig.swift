// libFuzzer entry for the config target: hands each input to FuzzTargets.config.
import TulaFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTargets.config(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
