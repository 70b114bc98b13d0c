// openai-node's embeddings.create against a server: prints the embeddings of argv texts as JSON,
// once with the SDK's default (base64, decoded by the SDK) and once as floats.
// Usage: node embeddings.cjs NODE_PREFIX BASE_URL API_KEY MODEL TEXT...
const path = require("path");
const [prefix, baseURL, apiKey, model, ...texts] = process.argv.slice(2);
const OpenAI = require(path.join(prefix, "node_modules", "openai"));

(async () => {
  const client = new OpenAI({ baseURL, apiKey });
  const byDefault = await client.embeddings.create({ model, input: texts });
  const asFloat = await client.embeddings.create({ model, input: texts, encoding_format: "float" });
  const vectors = (r) => r.data.map((d) => d.embedding);
  console.log(JSON.stringify({
    default: vectors(byDefault),
    float: vectors(asFloat),
    prompt_tokens: byDefault.usage.prompt_tokens,
  }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
