/**
 * User-facing strings of the server-rendered pages, one JSON file per language in views/locales.
 * The language is negotiated from Accept-Language among the files present; English is the fallback.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export type Translate = (key: string, vars?: Record<string, string | number>) => string;

export interface Messages {
  languages: string[];
  /** The best language for an Accept-Language header, and its translator. */
  forRequest(acceptLanguage: string | undefined): { lang: string; t: Translate };
}

function translator(catalog: Record<string, string>, fallback: Record<string, string>): Translate {
  return (key, vars = {}) => {
    const template = catalog[key] ?? fallback[key] ?? key;
    return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
      name in vars ? String(vars[name]) : whole,
    );
  };
}

export function loadMessages(localesDir: string, fallbackLang = 'en'): Messages {
  const catalogs = new Map<string, Record<string, string>>();
  for (const file of readdirSync(localesDir)) {
    if (file.endsWith('.json')) {
      catalogs.set(file.slice(0, -5).toLowerCase(), JSON.parse(readFileSync(join(localesDir, file), 'utf8')));
    }
  }
  const fallback = catalogs.get(fallbackLang);
  if (!fallback) throw new Error(`no ${fallbackLang}.json in ${localesDir}`);
  const translators = new Map([...catalogs].map(([lang, catalog]) => [lang, translator(catalog, fallback)]));

  return {
    languages: [...catalogs.keys()],
    forRequest(acceptLanguage) {
      const wanted = (acceptLanguage ?? '')
        .split(',')
        .map((part) => {
          const [tag = '', ...params] = part.trim().toLowerCase().split(';');
          const q = params.find((p) => p.trim().startsWith('q='));
          return { tag, q: q ? Number(q.trim().slice(2)) : 1 };
        })
        .filter((w) => w.tag && w.q > 0)
        .sort((a, b) => b.q - a.q);
      for (const { tag } of wanted) {
        for (const candidate of [tag, tag.split('-')[0]!]) {
          const t = translators.get(candidate);
          if (t) return { lang: candidate, t };
        }
      }
      return { lang: fallbackLang, t: translators.get(fallbackLang)! };
    },
  };
}
