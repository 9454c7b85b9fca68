// The control fuzz target: arbitrary bytes as a request line, as a byte stream to frame, and as a response line.

import Foundation
import TulaCore
import TulaStats

enum ControlCheck {
    static func run(_ input: UnsafeRawBufferPointer) {
        let bytes = [UInt8](input)
        let text = String(decoding: bytes, as: UTF8.self)
        checkRequest(text)
        checkFraming(bytes)
        checkResponse(text)
    }

    /// A request either is refused with a reason or reads back unchanged from the line it writes.
    static func checkRequest(_ text: String) {
        let request: ControlRequest
        do {
            request = try ControlRequest.parse(text)
        } catch {
            precondition(!error.message.isEmpty, "a refusal without a reason")
            return
        }
        let line = request.line
        precondition(!line.contains("\n") && !line.contains("\r"), "a request line with a line break: \(line)")
        do {
            let again = try ControlRequest.parse(line)
            precondition(again == request, "\(line) reads back as another request")
        } catch {
            preconditionFailure("the line of an accepted request is refused: \(line): \(error)")
        }
        precondition(ControlRequest.commands.contains(request.command), "unknown command \(request.command)")
        precondition(request.refusal(peerUID: 0) == nil, "root refused \(request.command)")
        precondition((request.refusal(peerUID: 1000) == nil) == !request.isMutating
                        && (request.refusal(peerUID: nil) == nil) == !request.isMutating,
                     "\(request.command): permission does not follow isMutating")
    }

    /// `LineBuffer` fed in pieces gives what a plain splitter gives for the whole stream, and no line longer
    /// than its limit. The first byte picks the limit and the piece size.
    static func checkFraming(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let stream = Array(bytes.dropFirst())
        for limit in [Int(first & 0x3F) + 1, controlMaxRequestBytes] {
            let piece = Int(first >> 6) * 5 + 1
            var buffer = LineBuffer(limit: limit)
            var got: [LineBuffer.Next] = []
            var offset = 0
            feeding: while offset < stream.count {
                buffer.append(stream[offset..<min(offset + piece, stream.count)])
                offset += piece
                while true {
                    let next = buffer.next()
                    if next == .needMore { break }
                    got.append(next)
                    if next == .oversized { break feeding }
                }
            }
            let (expected, rest) = splitLines(stream, limit: limit)
            precondition(got == expected, "LineBuffer(limit: \(limit)) in pieces of \(piece): \(got), expected \(expected)")
            if got.last != .oversized {
                precondition(buffer.finish() == rest, "LineBuffer.finish: the rest of the stream")
            }
        }
    }

    /// The reference: each line is the bytes before a newline found within `limit` bytes, less one trailing CR.
    static func splitLines(_ stream: [UInt8], limit: Int) -> ([LineBuffer.Next], String?) {
        var out: [LineBuffer.Next] = []
        var start = 0
        while true {
            let window = stream[start..<min(start + limit, stream.count)]
            if let newline = window.firstIndex(of: 10) {
                precondition(newline - start < limit, "reference: line over the limit")
                var line = stream[start..<newline]
                if line.last == 13 { line = line.dropLast() }
                out.append(.line(String(decoding: line, as: UTF8.self)))
                start = newline + 1
            } else if stream.count - start >= limit {
                out.append(.oversized)
                return (out, nil)
            } else {
                let rest = stream[start...]
                if rest.isEmpty { return (out, nil) }
                return (out, String(decoding: rest.last == 13 ? rest.dropLast() : rest, as: UTF8.self))
            }
        }
    }

    /// A response line from a (possibly hostile) appliance: decoded or refused, never a crash; a stats
    /// object read into a Summary can be written out again.
    static func checkResponse(_ text: String) {
        guard let (_, object) = try? ControlResponse.decode(text) else { return }
        if let control = object["control"] as? [String: Any] { _ = ControlServerCounters(json: control).json() }
        if let stats = object["stats"] as? [String: Any], let summary = try? Summary(json: stats) {
            _ = summary.json()
        }
    }
}
