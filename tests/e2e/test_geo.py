"""e2e_geo: a georeferenced GeoTIFF (a COG written by gdal_translate from a
NEON image, UTM zone 17N, 0.1 m, with a nodata block) drained from S3:

- the images row records EPSG 32617, the geotransform, a footprint and the
  nodata fraction; the mask is a GeoTIFF and trees.geojson is in the bucket;
- every trees row carries lon/lat equal to trees.json's, its box, radius in
  metres, and (PostGIS on the stack) a point equal to lon/lat lying inside
  the image's footprint polygon, found by a spatial query;
- canopy_cover is over valid pixels: the nodata block is not canopy;
- the same object above [input] spill_bytes streams to a temporary file and
  is read in windows from there, and its outputs above [output] spill_bytes
  are uploaded from temporary files: the same bytes in the bucket as the
  first run's outputs held in memory, and no file left behind.
"""
import json
import os
import subprocess
import sys

from e2e_lib import check, check_queue_empty, log, main, png_decode, png_encode, s3_event


def make_cog(env, path):
    """YELL_541000_west with its top-left 200 x 150 pixels set to 0,0,0 and 0
    declared nodata, as a deflate COG in UTM 17N."""
    src = os.path.join(env.source_dir, "tests", "data", "neon", "YELL_541000_west.png")
    img = png_decode(open(src, "rb").read())
    w, h = img["width"], img["height"]
    ch = {2: 3, 6: 4}[img["color_type"]]
    px = bytearray(img["pixels"])
    for y in range(150):
        for x in range(200):
            o = (y * w + x) * ch
            px[o:o + 3] = b"\0\0\0"
    rgb = bytearray()
    for i in range(w * h):
        rgb += px[i * ch:i * ch + 3]
    tmp_png = path + ".png"
    with open(tmp_png, "wb") as f:
        f.write(png_encode(w, h, bytes(rgb), color_type=2))
    subprocess.run(["gdal_translate", "-q", "-of", "COG", "-co", "COMPRESS=DEFLATE",
                    "-a_srs", "EPSG:32617", "-a_nodata", "0",
                    "-a_ullr", "403980", "3284980", str(403980 + w * 0.1), str(3284980 - h * 0.1),
                    tmp_png, path], check=True)
    return w, h


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, _ = env.queue("in", visibility=30)
    env.create_db()
    path = os.path.join(env.tmp, "yell_utm.tif")
    w, h = make_cog(env, path)
    data = open(path, "rb").read()
    key = "tiles/yell_utm.tif"
    etag = env.put(in_bucket, key, data)
    env.send(in_queue, [s3_event(in_bucket, key, len(data), etag)])
    # In windows (the S3 object's bytes read window by window): the large-raster
    # path end to end; test_run_geo holds it equal to whole-image processing.
    cfg = env.config(in_queue, out_bucket, "", "out/", idle_exit=3,
                     extra={"limits": {"window_pixels": 100000},
                            "output": {"spill_bytes": 0, "vector": "geojson,gpkg,csv"}})
    env.run(["drain", "-c", cfg], "drain", timeout=300, expect_rc=0)
    check_queue_empty(env, in_queue)

    row = env.query("SELECT id, epsg, geotransform, footprint_lonlat, nodata_fraction, "
                    "canopy_cover, mask_key, tree_count, status FROM images WHERE key = %s",
                    (key,))
    check(len(row) == 1, "%d images rows", len(row))
    img_id, epsg, gt, fp, nodata, cover, mask_key, ntrees, status = row[0]
    check(status == "ok" and epsg == 32617, "status %s, epsg %s", status, epsg)
    check(list(gt) == [403980.0, 0.1, 0.0, 3284980.0, 0.0, -0.1], "geotransform %s", gt)
    check(len(fp) == 10 and -82.1 < fp[0] < -81.9 and 29.6 < fp[1] < 29.8, "footprint %s", fp)
    check(abs(nodata - 200 * 150 / (w * h)) < 0.002, "nodata_fraction %s", nodata)
    check(mask_key == "out/tiles/yell_utm.mask.tif", "mask_key %s", mask_key)
    keys = env.list_keys(out_bucket)
    check("out/tiles/yell_utm.trees.geojson" in keys, "no GeoJSON in %s", keys)
    # [output] vector: the GeoPackage, DeepForest's CSV and the overlay's
    # georeferencing are uploaded beside the other outputs.
    for suffix in ("trees.gpkg", "trees.csv", "overlay.pgw", "overlay.png.aux.xml"):
        check("out/tiles/yell_utm." + suffix in keys, "no %s in %s", suffix, keys)

    doc = json.loads(env.s3.get_object(Bucket=out_bucket, Key="out/tiles/yell_utm.trees.json")
                     ["Body"].read())
    check(doc["georeferenced"] and doc["crs"]["epsg"] == 32617, "trees.json georef")
    check(abs(doc["canopy_cover"] - cover) < 1e-4, "cover json %s row %s", doc["canopy_cover"],
          cover)
    trees = env.query("SELECT lon, lat, radius_m, box_xmin, box_ymin, box_xmax, box_ymax, "
                      "x, y FROM trees WHERE image_ref = %s ORDER BY idx", (img_id,))
    check(len(trees) == ntrees == len(doc["trees"]) and ntrees > 20, "%d trees", len(trees))
    bad = 0
    for t, j in zip(trees, doc["trees"]):
        bad += abs(t[0] - j["lon"]) > 1e-7 or abs(t[1] - j["lat"]) > 1e-7
        bad += abs(t[2] - j["radius_m"]) > 1e-3
        bad += not (t[3] <= t[7] <= t[5] and t[4] <= t[8] <= t[6])
        bad += t[7] < 200 and t[8] < 150  # no tree in the nodata block
    check(bad == 0, "%d trees rows disagree with trees.json", bad)

    gis = env.query("SELECT enabled FROM canopy_features WHERE feature = 'postgis'")
    check(gis and gis[0][0], "the test stack has PostGIS, but canopy_features says %s", gis)
    inside = env.query(
        "SELECT count(*), count(*) FILTER (WHERE abs(ST_X(t.geom) - t.lon) < 1e-9 AND "
        "abs(ST_Y(t.geom) - t.lat) < 1e-9) FROM trees t JOIN images i ON i.id = t.image_ref "
        "WHERE i.id = %s AND ST_Contains(i.footprint, t.geom)", (img_id,))
    check(inside[0][0] == ntrees and inside[0][1] == ntrees,
          "%s of %d trees inside the footprint with points equal to lon/lat", inside[0], ntrees)
    gpkg = os.path.join(env.tmp, "yell_utm.trees.gpkg")
    obj = env.s3.get_object(Bucket=out_bucket, Key="out/tiles/yell_utm.trees.gpkg")
    check(obj["ContentType"] == "application/geopackage+sqlite3", "gpkg type %s",
          obj["ContentType"])
    with open(gpkg, "wb") as f:
        f.write(obj["Body"].read())
    info = subprocess.run(["ogrinfo", "-ro", "-so", gpkg, "trees"], capture_output=True,
                          text=True)
    check(info.returncode == 0 and "Feature Count: %d\n" % ntrees in info.stdout and
          'ID["EPSG",32617]' in info.stdout, "ogrinfo: %s %s", info.stdout[-1500:], info.stderr)
    csv = env.s3.get_object(Bucket=out_bucket, Key="out/tiles/yell_utm.trees.csv")["Body"].read()
    rows = csv.decode().splitlines()
    check(rows[0] == "image_path,xmin,ymin,xmax,ymax,label,score" and len(rows) == ntrees + 1,
          "trees.csv: %d rows, header %s", len(rows), rows[0])
    check(all(r.startswith("tiles/yell_utm.tif,") for r in rows[1:]), "trees.csv image_path")
    log("GeoTIFF drained: %d trees, cover %.3f over valid pixels, nodata %.3f; GeoPackage and "
        "CSV uploaded", ntrees, cover, nodata)

    # Streamed to a temporary file: the object's bytes are never in memory.
    key2 = "tiles/yell_utm_spilled.tif"
    etag2 = env.put(in_bucket, key2, data)
    env.send(in_queue, [s3_event(in_bucket, key2, len(data), etag2)])
    spill_dir = os.path.join(env.tmp, "spill")
    os.makedirs(spill_dir)
    cfg2 = env.config(in_queue, out_bucket, "", "out/", idle_exit=3, name="spill.ini",
                      extra={"limits": {"window_pixels": 100000},
                             "input": {"spill_bytes": 1000},
                             "output": {"spill_bytes": 1000, "vector": "geojson,gpkg,csv"},
                             "log": {"level": "debug"}})
    old_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = spill_dir
    try:
        _, _, err = env.run(["drain", "-c", cfg2], "drain-spill", timeout=300, expect_rc=0)
    finally:
        if old_tmp is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = old_tmp
    check_queue_empty(env, in_queue)
    check("streamed to a temporary file, read in windows" in err,
          "the object was not streamed to a file: %s", err[-2000:])
    check(os.listdir(spill_dir) == [], "left in TMPDIR: %s", os.listdir(spill_dir))
    doc2 = json.loads(env.s3.get_object(Bucket=out_bucket,
                                        Key="out/tiles/yell_utm_spilled.trees.json")
                      ["Body"].read())
    check(doc2["trees"] == doc["trees"] and doc2["canopy_cover"] == doc["canopy_cover"],
          "streamed: %d trees, cover %s; in memory: %d trees, cover %s", len(doc2["trees"]),
          doc2["canopy_cover"], len(doc["trees"]), doc["canopy_cover"])
    check(err.count("from a temporary file") >= 3,
          "outputs not uploaded from temporary files: %s", err[-2000:])
    # The CSV names its image: equal but for image_path.
    csv2 = env.s3.get_object(Bucket=out_bucket,
                             Key="out/tiles/yell_utm_spilled.trees.csv")["Body"].read()
    check([r.split(",", 1)[1] for r in csv2.decode().splitlines()[1:]] ==
          [r.split(",", 1)[1] for r in rows[1:]], "trees.csv streamed differs from in memory")
    for suffix in ("trees.geojson", "mask.tif", "overlay.png"):
        a = env.s3.get_object(Bucket=out_bucket, Key="out/tiles/yell_utm." + suffix)
        b = env.s3.get_object(Bucket=out_bucket, Key="out/tiles/yell_utm_spilled." + suffix)
        check(a["Body"].read() == b["Body"].read(),
              "%s uploaded from a temporary file differs from the one held in memory", suffix)
    log("the same GeoTIFF streamed to a temporary file: %d trees, equal, outputs uploaded "
        "from temporary files equal to those held in memory", len(doc2["trees"]))


if __name__ == "__main__":
    sys.exit(main("geo", body))
