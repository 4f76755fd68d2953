#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/<target>/.

The seeds are the inputs the unit tests and the fake servers already use
(tests/aws, tests/pipeline, tests/core, tests/image, models/test), made small.
Run it again after changing a seed here; crashing inputs that the fuzzers
found live next to them as crash-<what> and are kept by this script.
Needs gdal_translate (gdal-bin) for the raster seeds; without it those are
left as they are."""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def message():
    t = "fuzz_message"
    put(t, "s3-event.json",
        '{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",'
        '"s3":{"bucket":{"name":"b1"},"object":{"key":"a/x+y%25.png","eTag":"abc"}}},'
        '{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete",'
        '"s3":{"bucket":{"name":"b1"},"object":{"key":"gone.png"}}},'
        '{"eventSource":"aws:s3","eventName":"ObjectCreated:CompleteMultipartUpload",'
        '"s3":{"bucket":{"name":"b2"},"object":{"key":"big.png"}}}]}')
    put(t, "sns.json",
        '{"Type":"Notification","MessageId":"1","TopicArn":"arn:aws:sns:x",'
        '"Message":"{\\"Records\\":[{\\"eventName\\":\\"ObjectCreated:Put\\",'
        '\\"s3\\":{\\"bucket\\":{\\"name\\":\\"bk\\"},\\"object\\":{\\"key\\":'
        '\\"k%20k.png\\"}}}]}"}')
    put(t, "test-event.json",
        '{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}')
    put(t, "legacy.json",
        '{"image_id": 17, "bucket": "imgs", "key": "scans/a b.png", "scan_id": "s-1",'
        ' "address_id": 42.5, "tree_types": ["oak", "pine"]}')
    put(t, "legacy-csv.json",
        '{"bucket": "imgs", "key": "k.png", "tree_types": " oak, pine ,,birch"}')
    put(t, "key.txt", "odd+dir/my+tree%2B1%C3%A9.png")


def s3_xml():
    t = "fuzz_s3_xml"
    put(t, "list.xml",
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        '<Name>b</Name><Prefix>in/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>'
        '<IsTruncated>true</IsTruncated>'
        '<Contents><Key>in/a &amp; b.png</Key><LastModified>2026-11-22T08:00:00.000Z'
        '</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag>'
        '<Size>1234</Size><StorageClass>STANDARD</StorageClass></Contents>'
        '<Contents><Key>in/c.tif</Key><Size>99</Size></Contents>'
        '<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM='
        '</NextContinuationToken></ListBucketResult>')
    put(t, "create-multipart.xml",
        '<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult>'
        '<Bucket>b</Bucket><Key>k</Key><UploadId>UP-1</UploadId>'
        '</InitiateMultipartUploadResult>')
    put(t, "complete-multipart.xml",
        '<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult>'
        '<Location>http://b.s3/k</Location><Bucket>b</Bucket><Key>k</Key>'
        '<ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag></CompleteMultipartUploadResult>')
    put(t, "complete-error.xml",
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
        '<Message>We encountered an internal error. Please try again.</Message>'
        '<RequestId>656c76696e6727732072657175657374</RequestId></Error>')
    # An expiration whose offset overflowed int arithmetic (UBSan).
    put(t, "crash-sts-expiration.xml",
        '<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>'
        '<Expiration>2026-11-22T08:00:00+999999999:00</Expiration></Credentials>'
        '</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>')
    put(t, "sts.xml",
        '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        '<AssumeRoleWithWebIdentityResult><Credentials><SessionToken>TOKEN-1</SessionToken>'
        '<SecretAccessKey>SECRET-1</SecretAccessKey><Expiration>2026-11-22T08:00:00+02:00'
        '</Expiration><AccessKeyId>ASIAFAKE0001</AccessKeyId></Credentials>'
        '</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>')


def aws_error():
    t = "fuzz_aws_error"
    put(t, "s3.xml",
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>'
        '<Message>The request signature we calculated does not match the signature you '
        'provided.</Message><AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId><StringToSign>'
        'AWS4-HMAC-SHA256\n20261201T000000Z</StringToSign><RequestId>4442587FB7D0A2F9'
        '</RequestId><HostId>abc</HostId></Error>')
    put(t, "query.xml",
        '<ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><Error>'
        '<Type>Sender</Type><Code>AWS.SimpleQueueService.NonExistentQueue</Code>'
        '<Message>The specified queue does not exist for this wsdl version.</Message>'
        '<Detail/></Error><RequestId>42d59b56-7407-4c4a-be0f-4c88daeea257</RequestId>'
        '</ErrorResponse>')
    put(t, "moto.xml",
        '<?xml version="1.0" encoding="utf-8"?>\n<ErrorResponse><Errors><Error>'
        '<Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated '
        'does not match the signature you provided.</Message><Type>Sender</Type></Error>'
        '</Errors></ErrorResponse>')
    put(t, "json-headers.txt",
        'x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender\n'
        'x-amzn-requestid: REQ-JSON-1\n\n'
        '{"__type": "com.amazonaws.sqs#QueueDoesNotExist", '
        '"message": "The specified queue does not exist."}')
    put(t, "headers-only.txt",
        'x-amzn-errortype: ThrottlingException:http://internal.amazon.com/\n'
        'x-amz-request-id: R1\n\n')


def sqs_json():
    t = "fuzz_sqs_json"
    put(t, "receive.json",
        '{"Messages":[{"MessageId":"m-1","ReceiptHandle":"rh-1","MD5OfBody":'
        '"d41d8cd98f00b204e9800998ecf8427e","Body":"{\\"bucket\\":\\"b\\",\\"key\\":\\"k\\"}",'
        '"Attributes":{"ApproximateReceiveCount":"3","SentTimestamp":"1764547200000"},'
        '"MessageAttributes":{"scan":{"DataType":"String","StringValue":"s-1"},'
        '"blob":{"DataType":"Binary","BinaryValue":"AAEC"}}}]}')
    put(t, "receive-empty.json", '{}')
    put(t, "batch.json",
        '{"Successful":[{"Id":"2","MessageId":"mid-2"},{"Id":"3"}],'
        '"Failed":[{"Id":"4","Code":"ReceiptHandleIsInvalid","SenderFault":true,'
        '"Message":"The receipt handle is not valid."},{"Id":"5","Code":"InternalError",'
        '"SenderFault":false}]}')
    put(t, "attributes.json",
        '{"Attributes":{"ApproximateNumberOfMessages":"0","VisibilityTimeout":"30",'
        '"RedrivePolicy":"{\\"maxReceiveCount\\":\\"5\\"}"}}')
    put(t, "imds-creds.json",
        '{"Code":"Success","LastUpdated":"2026-11-22T07:00:00Z","Type":"AWS-HMAC",'
        '"AccessKeyId":"ASIAFAKE0001","SecretAccessKey":"SECRET-1","Token":"TOKEN-1",'
        '"Expiration":"2026-11-22T08:00:00Z"}')


def config():
    t = "fuzz_config"
    with open(os.path.join(ROOT, "config", "canopy.ini"), "rb") as f:
        put(t, "canopy.ini", f.read())
    put(t, "small.ini",
        "[aws]\nregion = eu-west-1\nmultipart_part_size = 8MiB\n"
        "[batch]\nsize = 10 ; inline comment\n[detector]\nscore_threshold = 0.35\n"
        "[limits]\nmax_pixels = 64M\n[log]\nlevel = debug\n")
    put(t, "bad-header.ini", "[batch\nsize = 3\n")


def aws_profile():
    t = "fuzz_aws_profile"
    put(t, "credentials",
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = sdef\n\n"
        "[fuzz]\naws_access_key_id = AKIDFUZZ\naws_secret_access_key = sfuzz\n"
        "aws_session_token = tok\n")
    put(t, "config",
        "[default]\nregion = us-west-2\n\n[profile fuzz]\nregion = eu-west-2\n\n"
        "[profile cfgonly]\naws_access_key_id = AKIDCFGONLY\n"
        "aws_secret_access_key = scfg\n")


def png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))


def png(width, height, color, depth, rows, extra=b""):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra +
            png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def pngs():
    t = "fuzz_png"
    out = {}
    out["rgb8.png"] = png(4, 3, 2, 8, [bytes(v for x in range(4) for v in (x * 60, y * 80, 100))
                                       for y in range(3)])
    out["rgba16.png"] = png(2, 2, 6, 16, [bytes(range(16)), bytes(range(16, 32))])
    out["gray1.png"] = png(9, 2, 0, 1, [b"\xaa\x80", b"\x55\x00"])
    out["palette-trns.png"] = png(3, 1, 3, 8, [b"\x00\x01\x02"],
                                  png_chunk(b"PLTE", b"\xff\x00\x00\x00\xff\x00\x00\x00\xff") +
                                  png_chunk(b"tRNS", b"\x80"))
    out["graya8.png"] = png(2, 1, 4, 8, [b"\x10\xff\x20\x00"])
    # A header that claims 65536 x 65536 pixels: refused before decoding.
    out["huge-header.png"] = png(65536, 65536, 2, 8, [b""])
    for name, data in out.items():
        put(t, name, data)
    return out


def rasters(png_seeds):
    t = "fuzz_raster"
    put(t, "rgb8.png", png_seeds["rgb8.png"])
    if not shutil.which("gdal_translate"):
        print("gdal_translate not found: raster seeds left as they are", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src.png")
        with open(src, "wb") as f:
            f.write(png(8, 8, 2, 8, [bytes(v for x in range(8) for v in (x * 30, y * 30, 90))
                                     for y in range(8)]))
        jobs = {
            "geo.tif": ["-of", "GTiff", "-a_srs", "EPSG:32617",
                        "-a_ullr", "404000", "3285000", "404008", "3284992",
                        "-a_nodata", "0"],
            "rgb16.tif": ["-of", "GTiff", "-ot", "UInt16", "-scale", "0", "255", "0", "4095",
                          "-co", "NBITS=12"],
            "cog.tif": ["-of", "COG", "-a_srs", "EPSG:4326",
                        "-a_ullr", "-82.0", "29.7", "-81.99", "29.69"],
            "img.jpg": ["-of", "JPEG"],
        }
        for name, args in jobs.items():
            dst = os.path.join(tmp, name)
            subprocess.run(["gdal_translate", "-q", *args, src, dst], check=True)
            with open(dst, "rb") as f:
                put(t, name, f.read())


def cnw_file(arch, tensors):
    """A .cnw image (models/FORMAT.md): arch JSON, tensors [(name, dims)]."""
    head = b"CNPYWTS\0" + struct.pack("<II", 1, len(arch)) + arch
    head += struct.pack("<I", len(tensors))
    dir_len = sum(2 + len(n) + 2 + 4 * len(d) + 16 for n, d in tensors)
    off = (len(head) + dir_len + 15) // 16 * 16
    entries, blobs = b"", b""
    for name, dims in tensors:
        count = 1
        for v in dims:
            count *= v
        entries += struct.pack("<H", len(name)) + name + struct.pack("<BB", 1, len(dims))
        entries += b"".join(struct.pack("<I", v) for v in dims)
        entries += struct.pack("<QQ", off, 4 * count)
        data = struct.pack("<%df" % count, *[0.25 * (i % 5) for i in range(count)])
        pad = (16 - len(data) % 16) % 16
        blobs += data + b"\0" * pad
        off += len(data) + pad
    body = head + entries
    body += b"\0" * ((16 - len(body) % 16) % 16) + blobs
    return body + struct.pack("<I", zlib.crc32(body) & 0xffffffff)


def cnw():
    t = "fuzz_cnw"
    with open(os.path.join(ROOT, "models", "test", "random-tiny.cnw"), "rb") as f:
        put(t, "random-tiny.cnw", f.read())
    head = (b'{"type":"conv","name":"head","in":3,"out":4,"k":1,"dilation":1,'
            b'"act":"none"}')
    tensors = [(b"head.weight", [4, 3, 1, 1]), (b"head.bias", [4])]

    def arch(stride, layers):
        return (b'{"name":"tiny","version":"tiny-0","stride":%d,"nms_iou":0.4,'
                b'"input":{"channels":["r","g","b"],"mean":[0,0,0],"std":[1,1,1]},'
                b'"layers":[%s],"outputs":["heatmap","log_radius","dx","dy"]}'
                % (stride, b",".join(layers)))
    # The smallest model the format allows: one 1x1 conv from r,g,b to 4 outputs.
    put(t, "tiny.cnw", cnw_file(arch(1, [head]), tensors))
    # 32 maxpools: 1 << 32 overflowed and came out as stride 1 (UBSan).
    put(t, "crash-32-pools.cnw",
        cnw_file(arch(1, [b'{"type":"maxpool"}'] * 32 + [head]), tensors))


if __name__ == "__main__":
    message()
    s3_xml()
    aws_error()
    sqs_json()
    config()
    aws_profile()
    rasters(pngs())
    cnw()
