namespace Llama.Compiled.Families.Tests;

/// <summary>Qwen2 shape: model_type qwen2 with q/k/v biases (no o_proj bias), tied, GQA 7:1, rope_theta 1e6, sliding window off.</summary>
[LlamaModel("Configs/qwen2.json")]
public partial class Qwen2Model;

public sealed class Qwen2ModelTests : FamilyTests
{
    protected override string ConfigFile => "qwen2.json";

    protected override ILlamaModel Load(string folder) => Qwen2Model.Load(folder);
}
