// Checks statemachine/migration.asl.json with AWS's own language service (the one behind the
// Step Functions editors), which is stricter than asl-validator: unknown fields (a misspelt
// Retry field), unreachable states and transitions to states that do not exist. Placeholders
// become ARNs or plain strings as CloudFormation would fill them in. Prints each finding and a
// last JSON line {diagnostics: N}.
//
// usage: node check-asl.mjs FILE
import { readFileSync } from 'node:fs';
import service from 'amazon-states-language-service';
import { TextDocument } from 'vscode-languageserver-textdocument';

const text = readFileSync(process.argv[2], 'utf8').replace(/\$\{(\w+)\}/g, (_, name) =>
  name.endsWith('FunctionArn') ? `arn:aws:lambda:us-east-1:123456789012:function:${name}` : `placeholder-${name}`);
const languageService = service.getLanguageService({});
const document = TextDocument.create('file:///migration.asl.json', 'json', 0, text);
const findings = await languageService.doValidation(document, languageService.parseJSONDocument(document));
for (const f of findings) console.log(`line ${f.range.start.line + 1}: ${f.message}`);
console.log(JSON.stringify({ diagnostics: findings.length }));
