"""Store, retrieve and list against a real objmeta-shard from Python.

tests/shard/it_python.c runs this with /usr/bin/python3 after generating
objmeta_pb2 from proto/objmeta.proto with protoc, proving that the wire
protocol works from a protobuf implementation other than protobuf-c.

usage: it_python.py GENERATED_DIR PORT
"""
import socket
import struct
import sys

sys.path.insert(0, sys.argv[1])
import objmeta_pb2 as pb  # noqa: E402

PORT = int(sys.argv[2])


def call(sock, req):
    body = req.SerializeToString()
    sock.sendall(struct.pack(">I", len(body)) + body)
    hdr = b""
    while len(hdr) < 4:
        chunk = sock.recv(4 - len(hdr))
        assert chunk, "connection closed"
        hdr += chunk
    (n,) = struct.unpack(">I", hdr)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    resp = pb.Response()
    resp.ParseFromString(data)
    assert resp.id == req.id, (resp.id, req.id)
    return resp


def main():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    req = pb.Request(id=1)
    req.store.bucket = "pybucket"
    req.store.key = "greetings/hello.txt"
    req.store.data = b"hello from python \x00\xff"
    req.store.metadata_json = '{"from": "python"}'
    req.store.content_type = "text/plain"
    resp = call(s, req)
    assert resp.status == pb.OK, resp
    assert resp.WhichOneof("body") == "store"
    version = resp.store.info.version
    assert version > 0

    req = pb.Request(id=2)
    req.retrieve.bucket = "pybucket"
    req.retrieve.key = "greetings/hello.txt"
    resp = call(s, req)
    assert resp.status == pb.OK, resp
    assert resp.retrieve.data == b"hello from python \x00\xff"
    assert resp.retrieve.info.version == version
    assert resp.retrieve.info.metadata_json == '{"from": "python"}'
    assert resp.retrieve.info.content_type == "text/plain"
    assert len(resp.retrieve.info.etag) == 16

    for i in range(5):
        req = pb.Request(id=10 + i)
        req.store.bucket = "pybucket"
        req.store.key = "greetings/more-%d" % i
        req.store.data = b"x"
        req.store.if_absent = True
        assert call(s, req).status == pb.OK

    req = pb.Request(id=20)
    req.list.bucket = "pybucket"
    req.list.prefix = "greetings/"
    req.list.max_keys = 4
    resp = call(s, req)
    assert resp.status == pb.OK, resp
    keys = [e.key for e in resp.list.entries]
    assert keys == ["greetings/hello.txt", "greetings/more-0", "greetings/more-1",
                    "greetings/more-2"], keys
    assert resp.list.is_truncated and resp.list.next_continuation_token
    req = pb.Request(id=21)
    req.list.bucket = "pybucket"
    req.list.prefix = "greetings/"
    req.list.continuation_token = resp.list.next_continuation_token
    resp = call(s, req)
    assert [e.key for e in resp.list.entries] == ["greetings/more-3", "greetings/more-4"]
    assert not resp.list.is_truncated

    req = pb.Request(id=30)
    req.retrieve.bucket = "pybucket"
    req.retrieve.key = "missing"
    resp = call(s, req)
    assert resp.status == pb.NOT_FOUND and resp.message, resp
    print("python round trip ok: store, retrieve, list (2 pages), not found")


if __name__ == "__main__":
    main()
