#!/usr/bin/env python3
"""A small local HTTP server for the aws tests: failures to retry, and the
EC2 instance metadata (IMDSv2) and container credential endpoints.

Prints "PORT <n>" on stdout once listening on 127.0.0.1, then serves until
killed; HTTPS when FAKE_TLS_CERT and FAKE_TLS_KEY name a PEM certificate and key. Every request path (without the query) is counted; GET /_count?path=P
answers the count for P, and GET /_hashes?path=P the SHA-256 of the body of
each request for P, in the order they came, separated by spaces. Routes:

  /flaky503/<n>/<id>   503 SlowDown for the first n requests, then 200
  /flaky500/<n>/<id>   500 InternalError for the first n requests, then 200
  /throttle/<n>/<id>   400 Throttling for the first n requests, then 200
  /reset/<n>/<id>      TCP reset for the first n requests, then 200
  /notfound/<id>       404 NoSuchKey, always
  /wrongregion/<id>    301 PermanentRedirect, bucket region eu-west-1
  /forbidden/<id>      403 AccessDenied, always
  /stream/<bytes>      200 with a chunked body of that size (no length)
  /cut/<n>/<bytes>/<id>  200 with Content-Length <bytes> of a fixed pattern
                       (byte i = i % 251); the first n answers stop halfway
  /hang/<seconds>      200 after sleeping that long
  /echo-token/<id>     200 with the X-Amz-Security-Token header as body
  /peer/<id>           200 with "peer <client port>": which connection carried it
  /expired/<n>/<id>    400 ExpiredToken for the first n requests, then 200
  /mpfail/<key>        a multipart upload whose part 2 fails with 400
                       InvalidPart; abort (DELETE ?uploadId) answers 204
  Requests are also counted as "<METHOD> <path>".
  200 answers carry "attempt <k> sha256 <hex of the request body>".
  Signed routes answer 400 without a SigV4 Authorization header.

  PUT /latest/api/token                     IMDSv2 token (needs the TTL header)
  GET /latest/meta-data/iam/security-credentials/[role]  (needs the token)
  GET /creds/<ttl>        container credentials expiring in ttl seconds
  GET /auth-creds/<ttl>   same, requires "Authorization: test-auth-token"
  GET /_set?imds_ttl=N    credentials expiry for the IMDS route
  GET /_set?creds_delay_ms=N  the container, IMDS credential and STS routes
                          answer N ms late (a slow credential service)
  POST /sts               STS AssumeRoleWithWebIdentity (form body; the token
                          must be "test-web-identity-token")
  SQS JSON (X-Amz-Target) ChangeMessageVisibilityBatch and DeleteMessageBatch
                          succeed for every entry; each visibility change is
                          logged, in the order its answer was sent, with its
                          VisibilityTimeout; one whose timeout equals
                          STATE vis_delay_for is answered vis_delay_ms late;
                          while STATE vis_fail is 1, visibility entries whose
                          ReceiptHandle ends in "-fail" fail (ReceiptHandleIsInvalid)
  SQS JSON, any other target whose QueueUrl has a path segment "forbidden"
                          403 AccessDenied in the JSON protocol's form (a
                          worker whose role may not use the queue)
  GET /_vislog            that log as a JSON list
"""
import datetime
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

COUNTS = {}
HASHES = {}
LOCK = threading.Lock()
STATE = {"imds_ttl": 3600, "creds_delay_ms": 0, "vis_delay_for": -1, "vis_delay_ms": 0,
         "vis_fail": 0}
VISLOG = []
IMDS_TOKEN = "imds-session-token-1"
ROLE = "canopy-role"


def count(path, body):
    with LOCK:
        COUNTS[path] = COUNTS.get(path, 0) + 1
        HASHES.setdefault(path, []).append(hashlib.sha256(body).hexdigest())
        return COUNTS[path]


def creds_json(prefix, n, ttl):
    exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=ttl)
    return json.dumps({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": f"ASIA{prefix}{n:04d}",
        "SecretAccessKey": f"secret-{prefix}-{n}",
        "Token": f"{prefix.lower()}-token-{n}",
        "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ"),
    })


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="text/plain", headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amz-request-id", "REQ-%d" % COUNTS.get(self.path_only, 0))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def s3_error(self, status, code, message):
        self.reply(status, f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>"
                           f"<Message>{message}</Message><RequestId>RID-{code}</RequestId></Error>",
                   "application/xml")

    def reset(self):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def handle_any(self):
        url = urlsplit(self.path)
        self.path_only = url.path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = url.path.strip("/").split("/")
        head = parts[0] if parts else ""
        if head == "_count":
            p = parse_qs(url.query).get("path", [""])[0]
            return self.reply(200, str(COUNTS.get(p, 0)))
        if head == "_hashes":
            p = parse_qs(url.query).get("path", [""])[0]
            with LOCK:
                return self.reply(200, " ".join(HASHES.get(p, [])))
        if head == "_vislog":
            with LOCK:
                return self.reply(200, json.dumps(VISLOG), "application/json")
        if head == "_set":
            for k, v in parse_qs(url.query).items():
                STATE[k] = int(v[0])
            return self.reply(200, "ok")
        k = count(url.path, body)
        count(self.command + " " + url.path, body)
        if head == "latest":
            return self.imds(url.path)
        if head in ("sts", "creds", "auth-creds") or url.path.startswith(
                "/latest/meta-data/iam/security-credentials/" + ROLE):
            time.sleep(STATE["creds_delay_ms"] / 1000.0)
        if head == "sts":
            return self.sts(parse_qs(body.decode()), k)
        if head in ("creds", "auth-creds"):
            if head == "auth-creds" and self.headers.get("Authorization") != "test-auth-token":
                return self.reply(401, "unauthorized")
            return self.reply(200, creds_json("CONT", k, int(parts[1])), "application/json")
        if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential="):
            return self.s3_error(400, "MissingAuthenticationToken", "not signed")
        ok = f"attempt {k} sha256 {hashlib.sha256(body).hexdigest()}"
        target = self.headers.get("X-Amz-Target", "")
        if target in ("AmazonSQS.ChangeMessageVisibilityBatch", "AmazonSQS.DeleteMessageBatch"):
            entries = json.loads(body or b"{}").get("Entries", [])
            if target.endswith("VisibilityBatch"):
                vis = entries[0].get("VisibilityTimeout") if entries else None
                if vis == STATE["vis_delay_for"]:
                    time.sleep(STATE["vis_delay_ms"] / 1000.0)
                with LOCK:
                    VISLOG.append(vis)
            fail = [e for e in entries if target.endswith("VisibilityBatch") and
                    STATE["vis_fail"] == 1 and e.get("ReceiptHandle", "").endswith("-fail")]
            answer = {"Successful": [{"Id": e["Id"]} for e in entries if e not in fail],
                      "Failed": [{"Id": e["Id"], "SenderFault": True,
                                  "Code": "ReceiptHandleIsInvalid",
                                  "Message": "injected failure"} for e in fail]}
            return self.reply(200, json.dumps(answer), "application/x-amz-json-1.0")
        if target.startswith("AmazonSQS.") and "forbidden" in urlsplit(
                json.loads(body or b"{}").get("QueueUrl", "")).path.split("/"):
            return self.reply(403, json.dumps({
                "__type": "com.amazonaws.sqs#AccessDenied",
                "message": "Access to the resource %s is denied." % target[10:]}),
                "application/x-amz-json-1.0", {"x-amzn-query-error": "AccessDenied;Sender"})
        if head == "mpfail":
            q = parse_qs(url.query, keep_blank_values=True)
            if self.command == "POST" and "uploads" in q:
                return self.reply(200, "<InitiateMultipartUploadResult><Bucket>mpfail</Bucket>"
                                       "<Key>k</Key><UploadId>UP-1</UploadId>"
                                       "</InitiateMultipartUploadResult>", "application/xml")
            if self.command == "PUT" and q.get("uploadId") == ["UP-1"]:
                if q.get("partNumber") == ["2"]:
                    return self.s3_error(400, "InvalidPart", "part 2 refused")
                return self.reply(200, "", headers={"ETag": '"etag-%s"' % q["partNumber"][0]})
            if self.command == "DELETE" and q.get("uploadId") == ["UP-1"]:
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self.s3_error(400, "InvalidRequest", "unexpected multipart call")
        if head == "expired":
            if k <= int(parts[1]):
                return self.s3_error(400, "ExpiredToken", "The provided token has expired.")
            return self.reply(200, ok)
        if head in ("flaky503", "flaky500", "throttle", "reset"):
            if k <= int(parts[1]):
                if head == "flaky503":
                    return self.s3_error(503, "SlowDown", "Please reduce your request rate.")
                if head == "flaky500":
                    return self.s3_error(500, "InternalError", "We encountered an internal error.")
                if head == "throttle":
                    return self.s3_error(400, "Throttling", "Rate exceeded")
                return self.reset()
            return self.reply(200, ok)
        if head == "notfound":
            return self.s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if head == "wrongregion":
            return self.reply(301, "<Error><Code>PermanentRedirect</Code><Message>The bucket you "
                                   "are attempting to access must be addressed using the specified "
                                   "endpoint.</Message></Error>", "application/xml",
                              {"x-amz-bucket-region": "eu-west-1"})
        if head == "forbidden":
            return self.s3_error(403, "AccessDenied", "Access Denied")
        if head == "hang":
            time.sleep(float(parts[1]))
            return self.reply(200, ok)
        if head == "peer":
            return self.reply(200, "peer %d" % self.client_address[1])
        if head == "echo-token":
            return self.reply(200, self.headers.get("X-Amz-Security-Token", ""))
        if head == "cut":
            n = int(parts[2])
            data = bytes(i % 251 for i in range(n))
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            try:
                if k <= int(parts[1]):
                    self.wfile.write(data[: n // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    self.wfile.write(data)
            except OSError:
                self.close_connection = True
            return None
        if head == "stream":
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 4096
            sent = 0
            try:
                while sent < n:
                    c = chunk[: min(4096, n - sent)]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                    sent += len(c)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True
            return None
        return self.reply(200, ok)

    def sts(self, form, k):
        want = {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15"}
        if any(form.get(key) != [v] for key, v in want.items()) or \
                not form.get("RoleArn") or not form.get("RoleSessionName"):
            return self.reply(400, "<ErrorResponse><Error><Code>InvalidParameterValue</Code>"
                                   "<Message>bad form %s</Message></Error></ErrorResponse>" % form)
        if form.get("WebIdentityToken") != ["test-web-identity-token"]:
            return self.reply(400, "<ErrorResponse><Error><Type>Sender</Type>"
                                   "<Code>InvalidIdentityToken</Code><Message>Couldn't retrieve "
                                   "verification key from your identity provider</Message>"
                                   "</Error></ErrorResponse>", "text/xml")
        c = json.loads(creds_json("WEB", k, 3600))
        return self.reply(200, "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws"
                               ".com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult>"
                               "<Credentials><SessionToken>%s</SessionToken><SecretAccessKey>%s"
                               "</SecretAccessKey><Expiration>%s</Expiration><AccessKeyId>%s"
                               "</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult>"
                               "</AssumeRoleWithWebIdentityResponse>"
                          % (c["Token"], c["SecretAccessKey"], c["Expiration"], c["AccessKeyId"]),
                          "text/xml")

    def imds(self, path):
        if path == "/latest/api/token":
            if self.command != "PUT" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self.reply(400, "token PUT needs the TTL header")
            return self.reply(200, IMDS_TOKEN)
        if self.headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
            return self.reply(401, "")
        base = "/latest/meta-data/iam/security-credentials/"
        if path == base:
            return self.reply(200, ROLE + "\n")
        if path == base + ROLE:
            return self.reply(200, creds_json("IMDS", COUNTS[path], STATE["imds_ttl"]),
                              "application/json")
        return self.reply(404, "")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the tests open dozens of connections at once

    def handle_error(self, request, client_address):
        pass  # clients abort on purpose (size caps); no tracebacks


def main():
    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # FAKE_TLS_CERT and FAKE_TLS_KEY (PEM files): serve HTTPS instead.
    cert, key = os.environ.get("FAKE_TLS_CERT"), os.environ.get("FAKE_TLS_KEY")
    if cert and key:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    sys.stdout.write("PORT %d\n" % server.server_address[1])
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
