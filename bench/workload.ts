// The sentences bench/run.ts and bench/ab.ts send to /ner and /pos.

/** Sentences for /ner and /pos: news-like English, 5 to 30 tokens. */
export const SENTENCES = [
  'Barack Obama visited Paris on Monday.',
  'The European Central Bank left interest rates unchanged on Thursday, citing slowing growth in Germany and Italy.',
  'Apple opened a new store in Tokyo.',
  'Angela Merkel met Emmanuel Macron in Berlin to discuss the budget of the European Union and the war in Ukraine.',
  'I think the new phone is way too expensive for what it does.',
  'Researchers at Stanford University published the study in Nature last week.',
  'Thanks!',
  'Microsoft said on Tuesday that it would buy the game maker Activision Blizzard for about $69 billion in cash.',
]
