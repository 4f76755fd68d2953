/* What encode.c (trees.json, GeoJSON, mask, overlay) and encode_gis.c
 * (GeoPackage, CSV, the overlay's georeferencing) share. */
#ifndef CANOPY_ENCODE_INTERNAL_H
#define CANOPY_ENCODE_INTERNAL_H

#include "canopy/pipeline.h"

enum { PIPE_RING = 32 }; /* vertices of a crown polygon */

/* A tree as a polygon in the raster's CRS: a crown's circle of its radius
 * (PIPE_RING vertices) or a box model's box clipped to the w x h raster
 * (4 vertices), in pixel space taken through the geotransform. x and y
 * hold PIPE_RING + 1 values (room to close the ring); returns the number of
 * vertices, not closed, in the pixel ring's order. */
int pipe_tree_ring_map(const img_georef *geo, const cnp_tree *tr, uint32_t w, uint32_t h,
                       double *x, double *y);

/* v as the shortest of %.15g, %.16g, %.17g that reads back as v (lossless,
 * as cJSON prints numbers); returns buf (32 bytes). */
const char *pipe_fmt_double(double v, char buf[32]);

/* <stem>.trees.csv: DeepForest's columns image_path,xmin,ymin,xmax,ymax,
 * label,score, one row per tree, boxes in pixels (clipped to the raster);
 * a crown model's trees are labelled "Tree". */
cnp_status pipe_encode_csv(const pipe_encode_params *p, const pipe_encode_in *in,
                           cnp_spool *out, cnp_err *err);

/* <stem>.trees.gpkg (georeferenced inputs): one layer "trees" in the
 * raster's CRS with a spatial index, one polygon feature per tree (a box
 * model's box, a crown's circle, as in trees.geojson) and the tree's
 * values. Written by OGR into a temporary file the spool adopts (or
 * /vsimem when the spool stays in memory). */
cnp_status pipe_encode_gpkg(const pipe_encode_params *p, const pipe_encode_in *in,
                            cnp_spool *out, cnp_err *err);

/* The overlay's georeferencing for a georeferenced input: a world file
 * (<stem>.overlay.pgw) and GDAL's <stem>.overlay.png.aux.xml with the
 * CRS, so that GDAL, QGIS and ArcGIS place the overlay PNG (ow x oh
 * pixels, a preview of a raster processed in windows: each of its pixels
 * covers width / ow input pixels). */
cnp_status pipe_encode_overlay_georef(const img_georef *geo, const pipe_result *r, uint32_t ow,
                                      uint32_t oh, cnp_spool *wld, cnp_spool *aux,
                                      cnp_err *err);

#endif
