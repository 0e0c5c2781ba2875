// Route schemas: the OpenAPI document (/openapi.json) and fast-json-stringify serialisers for
// JSON responses. Request parsing of the pixel/thumbnail routes is hand-written (target.ts).

const error = {
  type: 'object',
  description: 'Every error: a stable code (docs/errors.md) and a public message.',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;

const errors = { '4xx': error, '5xx': error };

const formatAndKey = {
  type: 'object',
  properties: {
    format: { type: 'string', description: 'Format name (GET /v1/formats)' },
    '*': {
      type: 'string',
      description: 'Source key: a relative path under sources/, percent-encoded per segment',
    },
  },
  required: ['format', '*'],
} as const;

const signedQuery = {
  sig: {
    type: 'string',
    description: 'HMAC signature (last parameter) when the server requires signed URLs',
  },
  exp: { type: 'integer', description: 'Optional expiry of a signed URL, Unix seconds (covered by sig)' },
} as const;

export const formats = {
  summary: 'The configured formats',
  tags: ['formats'],
  response: {
    200: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          width: { type: 'integer' },
          height: { type: 'integer' },
          fit: { type: 'string', enum: ['cover', 'inside'] },
          pixelFormat: { type: 'string' },
          rowAlignment: { type: 'integer' },
          stride: { type: 'integer', description: 'Bytes per row of a whole entry' },
          maxCount: { type: 'integer', description: 'Entry limit in effect (maxBytes may lower it)' },
          maxBytes: { type: 'integer', description: 'Byte bound on the entries, when configured' },
          family: { type: 'string' },
          position: {
            type: 'string',
            enum: ['attention', 'entropy'],
            description: "A cover format's crop strategy, when not the default centre",
          },
          entryBytes: {
            type: 'integer',
            description: "Bytes every entry reserves on disk, whatever the image's size (the full box)",
          },
          entries: { type: 'integer', description: 'Entries held now' },
          capacity: {
            type: 'object',
            description: 'What the table may hold: entries, and their bytes on disk when full',
            properties: { entries: { type: 'integer' }, bytes: { type: 'integer' } },
          },
          diskBytes: { type: 'integer', description: "Allocated bytes of the table's files now" },
        },
      },
    },
  },
};

export const pixels = {
  summary: 'Raw decoded pixels of an entry (decoded on first request)',
  description:
    'Body: rows of X-Row-Stride bytes (padding after X-Image-Width × bytes-per-pixel is zero). With ?rect the ' +
    'rectangle is tightly packed (X-Row-Stride = w × bytes-per-pixel). Supports ETag/If-None-Match (304), HEAD and ' +
    'a single byte Range (206/416).',
  tags: ['pixels'],
  params: formatAndKey,
  querystring: {
    type: 'object',
    properties: {
      rect: { type: 'string', pattern: '^\\d+,\\d+,\\d+,\\d+$', description: 'x,y,w,h inside the entry' },
      ...signedQuery,
    },
  },
  response: {
    200: {
      description: 'Pixels. Headers X-Image-Width, X-Image-Height, X-Row-Stride, X-Pixel-Format, ETag.',
      content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
    },
    206: {
      description: 'A byte range of the body',
      content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
    },
    304: { description: 'Not modified (If-None-Match matched the ETag)', type: 'null' },
    ...errors,
  },
};

export const thumbnails = {
  summary: 'Encoded thumbnail of an entry (WebP, AVIF, PNG or JPEG)',
  description:
    '?type picks the encoding; otherwise Accept is negotiated (WebP/AVIF only when named, else PNG for formats ' +
    'with alpha and JPEG without) and the response carries Vary: Accept. Encodings are cached in memory. ' +
    "Variants (w, h, dpr): resized from the smallest cached entry of the key's family at least as large, never " +
    'from the source while one exists; w × dpr and h × dpr round up to the next of PIXTABLE_VARIANT_WIDTHS (beyond ' +
    "the largest: 400 VARIANT_TOO_LARGE); never larger than the format's entry. w=auto reads Sec-CH-Width and " +
    'dpr=auto Sec-CH-DPR; Vary names exactly the headers used (Accept, Sec-CH-Width, Sec-CH-DPR). Every response ' +
    'carries Accept-CH: Sec-CH-DPR, Sec-CH-Width.',
  tags: ['thumbnails'],
  params: formatAndKey,
  querystring: {
    type: 'object',
    properties: {
      type: { type: 'string', enum: ['webp', 'avif', 'png', 'jpeg', 'jpg'] },
      w: {
        description:
          'Variant width in CSS pixels, integer 1..16384 (device pixels = w × dpr, rounded up to the next allowed ' +
          "size), or auto: the Sec-CH-Width header (device pixels; absent: the format's size). Not with h or dpr when auto.",
        anyOf: [
          { type: 'integer', minimum: 1, maximum: 16384 },
          { type: 'string', enum: ['auto'] },
        ],
      },
      h: {
        type: 'integer',
        minimum: 1,
        maximum: 16384,
        description: 'Variant height in CSS pixels (device pixels = h × dpr, rounded up like w)',
      },
      dpr: {
        description:
          'Device pixel ratio, default 1; auto: the Sec-CH-DPR header rounded up to 1, 2 or 3 (absent: 1). Needs w or h.',
        anyOf: [
          { type: 'integer', enum: [1, 2, 3] },
          { type: 'string', enum: ['auto'] },
        ],
      },
      ...signedQuery,
    },
  },
  response: {
    200: {
      description: 'The encoded image',
      content: {
        'image/webp': { schema: { type: 'string', format: 'binary' } },
        'image/avif': { schema: { type: 'string', format: 'binary' } },
        'image/png': { schema: { type: 'string', format: 'binary' } },
        'image/jpeg': { schema: { type: 'string', format: 'binary' } },
      },
    },
    304: { description: 'Not modified', type: 'null' },
    ...errors,
  },
};

const putResult = {
  type: 'object',
  properties: {
    key: { type: 'string' },
    sourceFingerprint: { type: 'string' },
    width: { type: 'integer' },
    height: { type: 'integer' },
    formats: { type: 'array', items: { type: 'string' } },
  },
} as const;

export const putSource = {
  summary: 'Upload (create or replace) a source image',
  description:
    'The body is the image file. It is decoded into every format before anything is replaced; the file is ' +
    'written atomically. 201 when created, 200 when replaced.',
  tags: ['sources'],
  params: { type: 'object', properties: { '*': formatAndKey.properties['*'] } },
  querystring: { type: 'object', properties: signedQuery },
  response: { 200: putResult, 201: putResult, ...errors },
};

export const getSource = {
  summary: 'Download the original source image',
  description:
    'The stored bytes as uploaded. Content-Type from the bytes (image/jpeg, image/png, …, else ' +
    'application/octet-stream); strong ETag from the source fingerprint (the sourceFingerprint of the upload); ' +
    'If-None-Match → 304; one byte Range → 206; HEAD for the headers only.',
  tags: ['sources'],
  params: { type: 'object', properties: { '*': formatAndKey.properties['*'] } },
  querystring: { type: 'object', properties: signedQuery },
  response: {
    200: {
      description: 'The original bytes',
      content: { '*/*': { schema: { type: 'string', format: 'binary' } } },
    },
    206: {
      description: 'One byte range of them',
      content: { '*/*': { schema: { type: 'string', format: 'binary' } } },
    },
    304: { description: 'Not modified', type: 'null' },
    ...errors,
  },
};

export const deleteSource = {
  summary: 'Delete a source and purge its entries in every format',
  tags: ['sources'],
  params: { type: 'object', properties: { '*': formatAndKey.properties['*'] } },
  querystring: { type: 'object', properties: signedQuery },
  response: { 204: { description: 'Deleted', type: 'null' }, ...errors },
};

export const listSources = {
  summary: 'Keys of all source images',
  tags: ['sources'],
  response: {
    200: { type: 'object', properties: { keys: { type: 'array', items: { type: 'string' } } } },
    ...errors,
  },
};

export const health = {
  summary: 'Liveness: sharp loads and the storage is writable',
  tags: ['operations'],
  response: {
    200: {
      type: 'object',
      properties: {
        status: { type: 'string' },
        checks: { type: 'object', additionalProperties: { type: 'string' } },
      },
    },
    503: {
      type: 'object',
      properties: {
        status: { type: 'string' },
        checks: { type: 'object', additionalProperties: { type: 'string' } },
      },
    },
  },
};

const readyBody = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    checks: { type: 'object', additionalProperties: { type: 'string' } },
  },
};

export const ready = {
  summary: 'Readiness: 503 while shutting down or low on disk',
  tags: ['operations'],
  response: { 200: readyBody, 503: readyBody },
};

const entrySize = {
  type: 'object',
  nullable: true,
  description: "The cached entry's real size, null when this format holds none of the key now",
  properties: { width: { type: 'integer' }, height: { type: 'integer' } },
} as const;

export const info = {
  summary: "What is stored for a key: the source's size and type, each format's entry size, the placeholder",
  description:
    'Reads what is stored and never decodes: a key no request has decoded yet has every format null and no ' +
    'placeholder. The placeholder (ThumbHash in base64 and the dominant colour) is computed when the key is ' +
    'decoded, from the smallest format of its family. 404 SOURCE_NOT_FOUND when the key has no source.',
  tags: ['sources'],
  params: { type: 'object', properties: { '*': formatAndKey.properties['*'] } },
  querystring: { type: 'object', properties: signedQuery },
  response: {
    200: {
      type: 'object',
      properties: {
        key: { type: 'string' },
        source: {
          type: 'object',
          properties: {
            bytes: { type: 'integer', description: "The source file's length" },
            width: {
              type: 'integer',
              description: 'Pixels as displayed (EXIF orientation applied); 0 if unknown',
            },
            height: { type: 'integer' },
            type: {
              type: 'string',
              description: 'What libvips reads it as: jpeg, png, webp, gif, heif, tiff, svg, …',
            },
          },
        },
        formats: { type: 'object', additionalProperties: entrySize },
        placeholder: {
          type: 'object',
          description: 'Absent while the smallest format of the family holds no entry of the key',
          properties: {
            thumbHash: {
              type: 'string',
              description: 'ThumbHash bytes, base64 (decode with thumbhash.thumbHashToRGBA)',
            },
            dominantColor: { type: 'string', description: '#rrggbb, sRGB' },
          },
        },
      },
    },
    ...errors,
  },
};
