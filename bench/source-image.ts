// The benchmarks' source image: 6 MP, as in the issue's image_filter measurement; noise (softened)
// keeps the JPEG's size and decode cost realistic rather than a flat colour's.
import sharp from 'sharp';

export async function writeBenchSource(file: string): Promise<void> {
  await sharp({
    create: {
      width: 3000,
      height: 2000,
      channels: 3,
      background: '#808080',
      noise: { type: 'gaussian', mean: 128, sigma: 40 },
    },
  })
    .blur(0.7)
    .jpeg({ quality: 85 })
    .toFile(file);
}
