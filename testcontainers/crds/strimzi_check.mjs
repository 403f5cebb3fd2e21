// Validates Strimzi resources (a JSON array on stdin) against Strimzi's schemas, as packaged by
// @kubernetes-models/strimzi-kafka-operator; prints a JSON array of "<kind>/<name>: <error>" strings.
import { KafkaTopic as V1beta2KafkaTopic } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/KafkaTopic";

const models = { "kafka.strimzi.io/v1beta2/KafkaTopic": V1beta2KafkaTopic };

let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const problems = [];
  for (const doc of JSON.parse(input)) {
    const name = `${doc.kind}/${doc.metadata?.name}`;
    const Model = models[`${doc.apiVersion}/${doc.kind}`];
    if (!Model) {
      problems.push(`${name}: no schema for ${doc.apiVersion}`);
      continue;
    }
    try {
      new Model(doc).validate();
    } catch (e) {
      problems.push(`${name}: ${e.message}`);
    }
  }
  process.stdout.write(JSON.stringify(problems));
});
