// The reason a failed system call gives, as text for error messages.
import Glibc

/// `strerror(errno)`: read it right after the call that failed, before anything else can change `errno`.
public func errnoText() -> String { String(cString: strerror(errno)) }
