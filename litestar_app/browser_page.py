"""The output browser page: one self-contained HTML document (inline CSS and JS, no external resource),
every file name escaped. Works as a table on a laptop and as a compact list on a phone."""

from __future__ import annotations

import datetime as dt
from html import escape
from urllib.parse import quote

from core.output.folder import PLAY_SVG, Entry, Listing

__all__ = ["PLAY_SVG", "render_listing"]

# Inline SVG icons: no icon font or emoji font needed on the viewing device.
_SVG = '<svg class="icon" viewBox="0 0 24 24" width="40" height="40" aria-hidden="true">{}</svg>'
ICONS = {
    "folder": _SVG.format(
        '<path fill="#f59e0b" d="M3 6a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z"/>'
    ),
    "file": _SVG.format(
        '<path fill="#94a3b8" d="M6 2h8l5 5v13a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2z"/>'
        '<path fill="#e2e8f0" d="M14 2v5h5"/>'
    ),
}

STYLE = """
:root{color-scheme:light dark;--bg:#f8fafc;--fg:#0f172a;--muted:#64748b;--card:#fff;--line:#e2e8f0;--accent:#2563eb}
@media (prefers-color-scheme:dark){:root{--bg:#0b1120;--fg:#e2e8f0;--muted:#94a3b8;--card:#111827;--line:#1f2937;--accent:#60a5fa}}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{padding:16px 20px;border-bottom:1px solid var(--line);background:var(--card);position:sticky;top:0;z-index:2}
h1{font-size:18px;margin:0 0 6px}.back{margin:0 0 6px;font-size:13px}.back a{color:var(--accent)}nav.crumbs a{color:var(--accent);text-decoration:none}nav.crumbs span.sep{color:var(--muted);margin:0 6px}
.stats{color:var(--muted);font-size:13px;margin-top:4px}main{padding:12px 20px 40px}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden}
th,td{padding:8px 10px;text-align:left;border-bottom:1px solid var(--line);vertical-align:middle}
th a{color:inherit;text-decoration:none}th a:hover{color:var(--accent)}th .arrow{color:var(--accent)}
td.thumb{width:76px}td.thumb img{width:64px;height:64px;object-fit:cover;border-radius:6px;display:block;background:var(--line)}
td.thumb svg.icon{display:block;margin:0 auto}
td.name a{color:var(--fg);text-decoration:none;font-weight:500;word-break:break-all}td.name a:hover{color:var(--accent)}
td.name .summary{display:block;color:var(--muted);font-size:12px;max-width:min(60ch,52vw);overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
td.size,td.date{white-space:nowrap;color:var(--muted);font-size:13px}.empty{padding:30px;text-align:center;color:var(--muted)}
@media (max-width:640px){th.date,td.date{display:none}td.thumb{width:52px;padding:6px}td.thumb img{width:44px;height:44px}
td.thumb svg.icon{width:32px;height:32px}th,td{padding:6px}td.size{font-size:12px}main{padding:8px}header{padding:12px}}
#lightbox{position:fixed;inset:0;background:rgba(0,0,0,.88);display:none;align-items:center;justify-content:center;flex-direction:column;z-index:10}
#lightbox.open{display:flex}#lightbox img,#lightbox video{max-width:94vw;max-height:82vh;border-radius:6px;background:#000}
#lightbox .caption{color:#e5e7eb;margin-top:10px;font-size:14px;word-break:break-all;padding:0 12px;text-align:center}
#lightbox button{position:absolute;background:rgba(255,255,255,.15);color:#fff;border:0;border-radius:999px;width:44px;height:44px;font-size:22px;cursor:pointer}
#lightbox .close{top:14px;right:14px}#lightbox .prev{left:14px;top:50%}#lightbox .next{right:14px;top:50%}
"""

SCRIPT = """
(() => {
  const box = document.getElementById('lightbox'), img = document.getElementById('lightbox-img'),
        video = document.getElementById('lightbox-video'), caption = document.getElementById('lightbox-caption');
  const items = Array.from(document.querySelectorAll('a.media'));
  let index = -1;
  function show(i) {
    index = (i + items.length) % items.length;
    const a = items[index], isVideo = a.dataset.kind === 'video';
    video.pause();
    img.hidden = isVideo; video.hidden = !isVideo;
    if (isVideo) { video.src = a.href; video.play().catch(() => {}); } else { img.src = a.href; img.alt = a.dataset.name; }
    caption.textContent = a.dataset.name;
    box.classList.add('open');
  }
  function close() { box.classList.remove('open'); video.pause(); video.removeAttribute('src'); index = -1; }
  items.forEach((a, i) => a.addEventListener('click', e => { e.preventDefault(); show(i); }));
  box.querySelector('.close').addEventListener('click', close);
  box.querySelector('.prev').addEventListener('click', e => { e.stopPropagation(); show(index - 1); });
  box.querySelector('.next').addEventListener('click', e => { e.stopPropagation(); show(index + 1); });
  box.addEventListener('click', e => { if (e.target === box) close(); });
  document.addEventListener('keydown', e => {
    if (index < 0) return;
    if (e.key === 'Escape') close(); else if (e.key === 'ArrowLeft') show(index - 1); else if (e.key === 'ArrowRight') show(index + 1);
  });
})();
"""


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def url_of(prefix: str, relative: str) -> str:
    return prefix + quote(relative, safe="/")


def _sort_link(label: str, key: str, sort: str, order: str, css: str) -> str:
    next_order = "desc" if sort == key and order == "asc" else "asc"
    arrow = f' <span class="arrow">{"▲" if order == "asc" else "▼"}</span>' if sort == key else ""
    return f'<th class="{css}"><a href="?sort={key}&amp;order={next_order}">{label}{arrow}</a></th>'


def _row(entry: Entry) -> str:
    name = escape(entry.name)
    if entry.is_dir:
        href = url_of("/output/", entry.path) + "/"
        visual = ICONS["folder"]
        link = f'<a class="entry-link" href="{escape(href)}">{name}/</a>'
        size = f"{entry.size} item{'s' if entry.size != 1 else ''}"
    else:
        href = url_of("/output/", entry.path)
        if entry.kind in ("image", "video"):
            thumb = escape(url_of("/thumb/", entry.path))
            visual = f'<img loading="lazy" src="{thumb}" alt="">'
            link = (
                f'<a class="entry-link media" data-kind="{entry.kind}" data-name="{name}" '
                f'href="{escape(href)}">{name}</a>'
            )
        else:
            visual = ICONS["file"]
            link = f'<a class="entry-link" href="{escape(href)}">{name}</a>'
        size = human_size(entry.size)
    summary = (
        f'<span class="summary" title="{escape(entry.summary)}">{escape(entry.summary)}</span>' if entry.summary else ""
    )
    modified = dt.datetime.fromtimestamp(entry.mtime).strftime("%Y-%m-%d %H:%M")
    return (
        f'<tr class="entry {entry.kind}"><td class="thumb">{visual}</td><td class="name">{link}{summary}</td>'
        f'<td class="size">{size}</td><td class="date">{modified}</td></tr>'
    )


def render_listing(listing: Listing, sort: str, order: str) -> str:
    crumbs = ['<a href="/output/">output</a>']
    walked = ""
    for part in [p for p in listing.path.split("/") if p]:
        walked = f"{walked}/{part}" if walked else part
        crumbs.append(f'<a href="{escape(url_of("/output/", walked))}/">{escape(part)}</a>')
    title = escape("/" + listing.path if listing.path else "/")
    rows = "".join(_row(entry) for entry in listing.entries)
    body = rows or '<tr><td colspan="4" class="empty">This folder is empty.</td></tr>'
    stats = (
        f"{listing.folders} folder{'s' if listing.folders != 1 else ''} · {listing.files} "
        f"file{'s' if listing.files != 1 else ''} · {human_size(listing.total_bytes)}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Outputs {title}</title><style>{STYLE}</style></head>
<body><header><p class="back"><a href="/ui/">← Back to the web UI</a></p><h1>Outputs</h1><nav class="crumbs">{'<span class="sep">/</span>'.join(crumbs)}</nav>
<div class="stats" id="stats">{stats}</div></header>
<main><table><thead><tr><th class="thumb"></th>{_sort_link("Name", "name", sort, order, "name")}
{_sort_link("Size", "size", sort, order, "size")}{_sort_link("Modified", "date", sort, order, "date")}</tr></thead>
<tbody>{body}</tbody></table></main>
<div id="lightbox" role="dialog" aria-modal="true"><button class="close" aria-label="Close">✕</button>
<button class="prev" aria-label="Previous">‹</button><button class="next" aria-label="Next">›</button>
<img id="lightbox-img" alt=""><video id="lightbox-video" controls playsinline hidden></video>
<div class="caption" id="lightbox-caption"></div></div>
<script>{SCRIPT}</script></body></html>"""
