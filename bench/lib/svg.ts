/** A small self-contained SVG chart: grouped bars on a log scale, one group per x value. */
export interface Series {
  name: string;
  color: string;
  values: number[];
}

export function barChartSvg(
  title: string,
  xLabel: string,
  yLabel: string,
  categories: string[],
  series: Series[],
): string {
  const width = 720;
  const height = 420;
  const margin = { top: 50, right: 20, bottom: 60, left: 70 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const max = Math.max(10, ...series.flatMap((s) => s.values));
  const decades = Math.ceil(Math.log10(max));
  // The axis starts at 0.5 so that a value of 1 still shows as a bar.
  const floor = Math.log10(0.5);
  const y = (v: number): number =>
    margin.top + plotH - ((Math.log10(Math.max(0.5, v)) - floor) / (decades - floor)) * plotH;
  const groupW = plotW / categories.length;
  const barW = (groupW * 0.7) / series.length;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  for (let d = 0; d <= decades; d++) {
    const v = 10 ** d;
    parts.push(`<line x1="${margin.left}" x2="${width - margin.right}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${margin.left - 8}" y="${y(v) + 4}" text-anchor="end">${v}</text>`);
  }
  categories.forEach((category, i) => {
    const x0 = margin.left + i * groupW + groupW * 0.15;
    series.forEach((s, j) => {
      const value = s.values[i] ?? 0;
      const top = y(value);
      const x = x0 + j * barW;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(margin.top + plotH - top).toFixed(1)}" fill="${s.color}"/>`,
      );
      parts.push(
        `<text x="${(x + barW / 2 - 1).toFixed(1)}" y="${(top - 4).toFixed(1)}" text-anchor="middle" font-size="11">${value}</text>`,
      );
    });
    parts.push(
      `<text x="${(margin.left + i * groupW + groupW / 2).toFixed(1)}" y="${margin.top + plotH + 18}" text-anchor="middle">${escapeXml(category)}</text>`,
    );
  });
  parts.push(
    `<line x1="${margin.left}" x2="${width - margin.right}" y1="${margin.top + plotH}" y2="${margin.top + plotH}" stroke="#333"/>`,
  );
  parts.push(
    `<text x="${margin.left + plotW / 2}" y="${height - 14}" text-anchor="middle">${escapeXml(xLabel)}</text>`,
  );
  parts.push(
    `<text transform="translate(18 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`,
  );
  series.forEach((s, j) => {
    const lx = margin.left + 10 + j * 200;
    parts.push(`<rect x="${lx}" y="${margin.top - 18}" width="12" height="12" fill="${s.color}"/>`);
    parts.push(`<text x="${lx + 18}" y="${margin.top - 8}">${escapeXml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
