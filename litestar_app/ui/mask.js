// The img2img input image and the inpainting mask painted over it. The mask canvas has the image's own size
// (so the mask needs no resampling) and is stretched over the shown image by CSS; strokes are stored as alpha
// and exported as the API wants them: white = repaint, black = keep.

export function createMask({ stage, image, canvas, brushSize, erase, invertButton, clearButton }) {
  const context = canvas.getContext('2d');
  let drawing = false;
  let last = null;

  function point(event) {
    const box = canvas.getBoundingClientRect();
    const scale = canvas.width / box.width;
    return { x: (event.clientX - box.left) * scale, y: (event.clientY - box.top) * scale, scale };
  }

  function stroke(from, to) {
    context.globalCompositeOperation = erase.checked ? 'destination-out' : 'source-over';
    context.strokeStyle = '#fff';
    context.fillStyle = '#fff';
    context.lineCap = 'round';
    context.lineJoin = 'round';
    context.lineWidth = Number(brushSize.value) * to.scale;
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x + 0.01, to.y);
    context.stroke();
  }

  canvas.addEventListener('pointerdown', (event) => {
    if (!canvas.width) return;
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
    stroke(last, last);
  });
  canvas.addEventListener('pointermove', (event) => {
    if (!drawing) return;
    const next = point(event);
    stroke(last, next);
    last = next;
  });
  for (const name of ['pointerup', 'pointercancel']) canvas.addEventListener(name, () => { drawing = false; });

  function clear() { context.clearRect(0, 0, canvas.width, canvas.height); }

  invertButton.addEventListener('click', () => {
    const inverted = new OffscreenCanvas(canvas.width, canvas.height);
    const other = inverted.getContext('2d');
    other.fillStyle = '#fff';
    other.fillRect(0, 0, canvas.width, canvas.height);
    other.globalCompositeOperation = 'destination-out';
    other.drawImage(canvas, 0, 0);
    clear();
    context.globalCompositeOperation = 'source-over';
    context.drawImage(inverted, 0, 0);
  });
  clearButton.addEventListener('click', clear);

  return {
    /** Shows `dataUrl` as the input image and starts an empty mask of its size; resolves to its size. */
    setImage(dataUrl) {
      return new Promise((resolve, reject) => {
        image.onload = () => {
          canvas.width = image.naturalWidth;
          canvas.height = image.naturalHeight;
          clear();
          stage.hidden = false;
          resolve({ width: image.naturalWidth, height: image.naturalHeight });
        };
        image.onerror = () => reject(new Error('The browser cannot read that file as an image.'));
        image.src = dataUrl;
      });
    },
    /** Paints a saved mask (white = repaint) over the current image's canvas; resolves once drawn. */
    setMask(dataUrl) {
      return new Promise((resolve, reject) => {
        const picture = new Image();
        picture.onload = () => {
          const scratch = document.createElement('canvas');
          scratch.width = canvas.width;
          scratch.height = canvas.height;
          const other = scratch.getContext('2d');
          other.drawImage(picture, 0, 0, canvas.width, canvas.height);
          const pixels = other.getImageData(0, 0, canvas.width, canvas.height);
          for (let i = 0; i < pixels.data.length; i += 4) {
            const on = pixels.data[i] > 127;
            pixels.data[i] = pixels.data[i + 1] = pixels.data[i + 2] = 255;
            pixels.data[i + 3] = on ? 255 : 0;
          }
          context.putImageData(pixels, 0, 0);
          resolve();
        };
        picture.onerror = () => reject(new Error('The browser cannot read the saved mask.'));
        picture.src = dataUrl;
      });
    },
    hasImage: () => !stage.hidden && Boolean(image.src),
    imageBase64: () => image.src.split(',', 2)[1],
    /** The mask as base64 PNG, or null when nothing is painted (plain img2img). */
    maskBase64() {
      if (!canvas.width) return null;
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
      let painted = false;
      for (let i = 0; i < pixels.data.length; i += 4) {
        const value = pixels.data[i + 3] > 127 ? 255 : 0;
        painted ||= value > 0;
        pixels.data[i] = pixels.data[i + 1] = pixels.data[i + 2] = value;
        pixels.data[i + 3] = 255;
      }
      if (!painted) return null;
      const out = document.createElement('canvas');
      out.width = canvas.width;
      out.height = canvas.height;
      out.getContext('2d').putImageData(pixels, 0, 0);
      return out.toDataURL('image/png').split(',', 2)[1];
    },
  };
}
