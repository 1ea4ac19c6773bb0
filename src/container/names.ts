/**
 * Container names: Docker's rules for user-chosen names, and generated
 * `adjective_surname` names in the spirit of Docker's name generator (the word
 * lists are strata's own).
 */
import { randomInt } from 'node:crypto';
import { StrataError } from '../content/errors.js';

/** Docker's `validContainerNamePattern`: first character alphanumeric, then `[a-zA-Z0-9_.-]`, two characters at least. */
const VALID_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

/** A name Docker would refuse. */
export class InvalidContainerNameError extends StrataError {
  constructor(readonly input: string) {
    super('INVALID_CONTAINER_NAME', `Invalid container name (${input}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  }
}

/**
 * Validates a user-chosen name and returns it without Docker's optional
 * leading `/` (Docker accepts `/web` and `web` alike and stores `/web`).
 */
export function normalizeContainerName(input: string): string {
  const name = input.startsWith('/') ? input.slice(1) : input;
  if (!VALID_NAME_RE.test(name)) throw new InvalidContainerNameError(input);
  return name;
}

const ADJECTIVES = [
  'agile', 'amazing', 'bold', 'brave', 'bright', 'calm', 'careful', 'cheerful', 'clever', 'cool', 'curious', 'daring',
  'dazzling', 'eager', 'elegant', 'epic', 'fervent', 'focused', 'friendly', 'gallant', 'gentle', 'happy', 'hopeful',
  'humble', 'jolly', 'keen', 'kind', 'lucid', 'merry', 'modest', 'nimble', 'noble', 'patient', 'peaceful', 'quiet',
  'quirky', 'relaxed', 'serene', 'sharp', 'steady', 'sweet', 'tender', 'thirsty', 'tidy', 'trusting', 'upbeat',
  'vibrant', 'vigilant', 'wizardly', 'zealous',
];

const SURNAMES = [
  'agnesi', 'archimedes', 'babbage', 'banach', 'bardeen', 'bell', 'boole', 'cantor', 'cerf', 'curie', 'darwin',
  'dijkstra', 'einstein', 'euclid', 'euler', 'faraday', 'fermat', 'feynman', 'franklin', 'galileo', 'gauss',
  'goldberg', 'hamilton', 'hawking', 'heisenberg', 'hermann', 'hodgkin', 'hopper', 'hypatia', 'johnson', 'kepler',
  'knuth', 'kowalevski', 'lamarr', 'lamport', 'leakey', 'liskov', 'lovelace', 'maxwell', 'meitner', 'mendel',
  'newton', 'noether', 'pascal', 'pasteur', 'planck', 'ramanujan', 'ritchie', 'shannon', 'sinoussi', 'tesla',
  'thompson', 'torvalds', 'turing', 'volta', 'wiles', 'wozniak', 'yalow', 'yonath', 'zhukovsky',
];

/**
 * A random `adjective_surname`. Like Docker, a retry (`retry > 0`) appends a
 * digit, so a clash does not keep drawing from the same small space, and
 * Steve Wozniak is never boring (there is no `boring` here to begin with).
 */
export function generateContainerName(retry = 0): string {
  const name = `${ADJECTIVES[randomInt(ADJECTIVES.length)]}_${SURNAMES[randomInt(SURNAMES.length)]}`;
  return retry > 0 ? `${name}${randomInt(10)}` : name;
}
