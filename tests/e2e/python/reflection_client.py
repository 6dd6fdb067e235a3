#!/usr/bin/env python3
"""A generic gRPC client of gnn-coder that knows nothing of its proto files.

It asks the server's reflection service for the descriptors of gnn_coder.v1.CodeSearch,
builds the message classes from them at run time, and calls the service, the way grpcurl
does. Usage:

    reflection_client.py HOST:PORT [--token TOKEN] QUERY

Prints one JSON object: the services listed by reflection, the health status, the
repositories, and the hits of a search for QUERY. Exits 2 with a message if a call fails.
"""

import argparse
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("query")
    ap.add_argument("--token")
    args = ap.parse_args()

    channel = grpc.insecure_channel(args.target)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []

    class Auth(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            return continuation(_Details(details, metadata), request)

        def intercept_stream_stream(self, continuation, details, requests):
            return continuation(_Details(details, metadata), requests)

    authed = grpc.intercept_channel(channel, Auth())

    # Health needs no token.
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="gnn_coder.v1.CodeSearch"), timeout=10
    )

    reflection = ProtoReflectionDescriptorDatabase(authed)
    services = sorted(reflection.get_services())
    pool = descriptor_pool.DescriptorPool(reflection)
    service = pool.FindServiceByName("gnn_coder.v1.CodeSearch")
    methods = sorted(m.name for m in service.methods)

    def call(method_name, fields):
        method = service.FindMethodByName(method_name)
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        request = json_format.ParseDict(fields, request_cls())
        rpc = authed.unary_unary(
            f"/gnn_coder.v1.CodeSearch/{method_name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_cls.FromString,
        )
        return json_format.MessageToDict(rpc(request, timeout=30), preserving_proto_field_name=True)

    try:
        repos = call("ListRepositories", {})
        hits = call("Search", {"query": args.query, "top_k": 5, "mode": "MODE_LEXICAL"})
        bad = None
        try:
            call("Search", {"query": "   "})
        except grpc.RpcError as e:
            bad = e.code().name
    except grpc.RpcError as e:
        print(f"call failed: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(2)
    print(
        json.dumps(
            {
                "services": services,
                "methods": methods,
                "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
                "repositories": repos.get("repositories", []),
                "hits": hits.get("hits", []),
                "empty_query": bad,
            }
        )
    )


class _Details(grpc.ClientCallDetails):
    def __init__(self, d, extra):
        self.method = d.method
        self.timeout = d.timeout
        self.metadata = list(d.metadata or []) + extra
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)


if __name__ == "__main__":
    main()
