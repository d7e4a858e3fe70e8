--
-- chainup: RSA data envelopes (the provider's published vectors), account
-- keys, request validation, callbacks that are not authentic
--
-- pri and pub are the demo keys published in ChainUp's docs (api_note.rst):
-- pri is a merchant's private key, pub the wallet's public key.  pri_pub is
-- the public half of pri (openssl pkey -pubout) as PEM, other_pub an
-- unrelated 2048-bit key, small_pri a 1024-bit private key (PEM).
\set pri_pub_b64 'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA+mDSC1jiWY0uhUEPWS/QhCnFmU05Xawy7MT9nUDBO4UlEw0OQKLAVGZNfFKttdkgtvi9FAPRulj6AjcxwgfEz9uYwvhMCJBzDeBBD0bPmxB1IF9wat6Edkgh4xIqpXkxVtpDv6EulYPW4U0k+TBWhJwNH3NgYd/uIkbrPuZlXOrsdJRueX9apr1DTOIYT+6lac3N19MRQNEpbvHcnpdXWzlEJSW1JK7eTc116pkaD+VFR1Alz2cx9ZG8XWxgOfE6J13Hoegx0EWuqSATWkOgX56oTLxlb7iKij63VqvMooL08Ns6gX8AsGN/9xWaCOSAkPKEtxkR2D/61853KpCk8wIDAQAB'
\set other_pub 'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAp0j4S4MLoAz+56R+qSZ1lN0/hmVfP2LrFpr6K1r6Gk88b7/JamkXYxMcuiCB84vcY3INciZH47YQEMSjSeivBApUSG91n5S7W93hnqlS38z7Q2IuEjuWzQ1Rfi1w2nHvt7aF4/j/IrP3Rdh1sUt+Ro7Ua2QhqFEGQcWlc4IXjDGkdmuBxPJJA2PEe5bKSz4qrMDL9smq9QL/Nd8mNDqjR3JRhimApnnR3zlP5tN9SKNrGZq1dJGfR5Jr9P8yFz+56Sv4Ba+Kc3sektYwqA+krm1A5mtuVb/WfnxGlMED4CkkBZeUo8uFU6nSC8jFFKOMzelQhdt2vB1XSPQ1T68KkwIDAQAB'
\set small_pri_b64 'MIICdQIBADANBgkqhkiG9w0BAQEFAASCAl8wggJbAgEAAoGBAOvIEtODSuF8Fb13eDLwuAGhEH8bAwOJKhSNIVivmsfQYUV99+c/x5RMkpVPzfY1jWyLNz8cpC0LRn1dXc7aI96Cu7XeK3RCF0U/d0KiUYaPHmxAhTlt2PMOmedkmhXl69rYwJiWoO1GXOzhkfZKOog5hgHUbVHTHrNB6AFt0HQFAgMBAAECgYAya+vSva4CwGVpyiWzRxUijA4aEG25kNil4nRyIcOI3YAfu0uLcXE9vo5OTe2urE8dGjxrS7W0SEf/wTqxZKbsoov2bV8Nzh6cGG95Iqto0/piidyFf9qxEQXhAcxwwj0lLOd4tnZCRZlPkSdHhc5HPkThWYTH1BQDu/68eA08lQJBAPyJQBZPzMEj/Oks+oklc8K6zfSogT1rPNUSzOzEEag0XAUi1y9YxcChXdzqS4pS3qoM2Ci3gn5+clSbCIcqNUcCQQDvA/3SIhErkRkeRpmGtEsRveYBNRWhxDjCga2ENlePDsNznacjUGWz9CA5vToZy9eUxKno+PMr29wGTGXFZGJTAkBfTPxebyb6DDa5WDwD3Zpd9lka5yw+nWWLk1i6URPIwlmnpopGV93o3/yoDdMMFFHrIoXAd+BLFDTZMNh7CbapAkBC3Vz+kiU3iOn7/Egq1PlDR1q278DTdm9iiqCeIg2wqbKn/2yohm9NPnhdbsB4QvxWVAYsdKiilmkhIfI+nGydAkBr0w6rjIW5h2aOltWVNK22yeNUZbHP+qfjh42QVtZC6GBKh8XJToTp6++st8Rq8qGenjh/yfD4ZW/BUVXy2ceB'
SELECT '-----BEGIN PUBLIC KEY-----' || E'\n' || regexp_replace(:'pri_pub_b64', '(.{64})', E'\\1\n', 'g')
       || E'\n-----END PUBLIC KEY-----\n' AS pri_pub,
       '-----BEGIN PRIVATE KEY-----' || E'\n' || regexp_replace(:'small_pri_b64', '(.{64})', E'\\1\n', 'g')
       || E'\n-----END PRIVATE KEY-----\n' AS small_pri \gset
\set pri 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQD6YNILWOJZjS6FQQ9ZL9CEKcWZTTldrDLsxP2dQME7hSUTDQ5AosBUZk18Uq212SC2+L0UA9G6WPoCNzHCB8TP25jC+EwIkHMN4EEPRs+bEHUgX3Bq3oR2SCHjEiqleTFW2kO/oS6Vg9bhTST5MFaEnA0fc2Bh3+4iRus+5mVc6ux0lG55f1qmvUNM4hhP7qVpzc3X0xFA0Slu8dyel1dbOUQlJbUkrt5NzXXqmRoP5UVHUCXPZzH1kbxdbGA58TonXceh6DHQRa6pIBNaQ6BfnqhMvGVvuIqKPrdWq8yigvTw2zqBfwCwY3/3FZoI5ICQ8oS3GRHYP/rXzncqkKTzAgMBAAECggEAdag77EMnkueKXeo12TZj6Udr6N9mPsOl5qenelcsttiZlHtFIFCays6MSQjdQqA3BGSdDaPB0azwR0xCoKhf70GFZtGhgUDIIFQqnpArDPZN5BmVTVMlsiOxcPBfhAUQj3zf61RF/NLIjnVfE46IiaZ/cDEasMO3NvpWn+dK6L86zklgwHfC5IXTFnFRVA3bWkAQ3gswhLzjs50HNoNV96fsnbt1n7NSWhyz9B8hGMV+qYz1NGmb+VsaAune+oIv28krcaqf+Doah37rCmzEgVeZZ1/flPFOXpaq1eGJDgbLu6FbbgqfabCBlhmuzuwNbDl/2T/U9U6JoQWGR7t++QKBgQD8XSzBqpWwz8ebfsPipvnhIugbHgBnwLaRc3/xieuNuiDMsYPY1isBWSeYqjwV5uTad9s9dRxb6OOMH+KChkUxkYhEvoujUulGSuO4MxJlWl99WWEsbLzefubBD0zyHo5daHbPPXO8UPMu/SfiYxT2D5wsW2/swUqHWS3AmDS9RQKBgQD9/FJC/++DLyhU60Q9vrVY50zQTyPLtPnuIxbsPXB1Exo1wKe+LC02k9Cub9f5EFViTEniWRasB7ecnDxJT/ISU+hJjMUKFuaHueb7dO6wiIqyfpJeQM/4fKalBQI+nCEh3aceNKP44mk/lv2x22+P47EAKh7yqBdEVUv5GlHw1wKBgQCbAqReJOijXU0vLtMlYgj0h9tn5Kq9D/tUJky9UUkVmfFRqevhgdOSlW+j71TO4y9JHfvVqRyNO+ShCmi4Yb8Yrlq0VxIwdNoCqjdryjsPdE5ZEVCF2Bi+1dXpWfuacLhjman4q7duQY7OGwOno9KZPYdhG50JIMUlk9pthVBHvQKBgCXUC+iAuAqg3m/vboWHvvjT0mQANYOkm8j1HvfmmrZFNxUkcZdoev9y+pTQgalN3nm6hRKaVD8hEx7XQj9lEdfa+XDi74H2MTWr4ZQ4MUjHvWiiY2h4XMFUx3kyisgKdwDVQ4vDKVzrU+OtuHFiDnau4fD1VRCtKnH6Bku+uM+XAoGAB7V/OFlk7gaX7gne7p+DypXICn1oGE46aFLsDciOyePNovYg6bfdiUB9evwFSijiHq7eldZIQSRIdUalL1qfv2zDwFmEGpSd/RZYOOv21c3eISjln6W7ZGtumtLHx2nGpC072i5vNee0aAPEdvO0h3y4gvzad5L4KwIwyHifKic='
\set pub 'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAua4XMw/W9BxyZhirTlNau5Y/tdAHkPsbZo58Cdz1ByeRX8RwOibpREDZLTwhMTZGroqWEAZ+efQhx0gez++03Sw6IsPWPDpzpM90ezn2gBqPog7jxQA+M0E32gMHWB5ygplPwQkGz/qGYeJ5qhp2OZ8O+jFqOJNi7ob1hE2QsPT118HIhUzTL77urD61BovI+jg9Rx6PGAqlFLLmfXToqDulLkYVKhhQlL7ii6iuzIXgl46mbmvH2RXJRq083sa9b9J1z/WzXxNaHNpq5USl3ifTTyD/IiOKnblA7f4KJmr9rcMFbAP1mNxz95at6hPBvqGypPqqixxPBrdkOIPUVwIDAQAB'
-- case: sealing the seed's request plaintext with the demo private key gives the seed's example byte for byte
SELECT withdraw._envelope_seal(
  '{"charset":"utf-8","sign":"","time":"1586415718222","app_id":"baaceb1e506e1b5d7d1f0a3b1622583b","version":"2.0","email":"hicointest111.@qq.com"}',
  :'pri') = 'GCJBk77n7epyOexdGZ20qvukd321TpJ62lIAtlCinW6TzHx8SIbm6evXGulO87UgLTzIWCtgupgeLJKDdZmC7msuPNBGK--Ec27WZXjuhI0gNWXcOVk5RW_VRVcyfJ1Ml-DMW8XVxZRgA2U1bt9BztiyfryzMGj8_jl1IXd5sOQfPYXulCdm70WyTJpjsDkuMSov6QUmOn-C_-HUoZ7s715EMeZ60D09uUsF0i6mKLhFZTEQZPGPeJITYSJNddAw7nvqvX2KzNc6YUeCQhEmU1Dfxp65W4e3SVOgpd_2Q-dLN1MpOlkUKwbmbpb-gEh_s68yl7ox6WSgKfCK4i_uvA' AS request_vector_matches;
-- case: the seed's withdraw response opens with the demo public key to the documented JSON
SELECT withdraw._envelope_open('k4w5AijeFWF3AtYbgP1RYfej7ifW4R663pOt5bhQp8RIxFUVb6zKOy4snKukA_5T9DVwhjdhsHjSRpmxD5LwL2OtplwSUACRPnW39ANypjO5YeMJTpiY9_7jofZWYzAMB4gdkrAI3DAbvkjCFUKQIXfAGMl25sp05mdBZgfY1oEtveSyislYOwaLM3SfN_2bFvrKy7E2V0AkZhrYImKiCzmDZvE-i93cePVQ4ODiuusHgk1vH5QgvPv62Sh-xxQPb4TsWj2G_RBoo9dFlg4zbWOdb9z6SVzR86ouxKOX_RhE4vWsReVD4ukdsW8eO7SVCI74qc61hIS12X6u-Hv40g', :'pub') AS response;
-- case: the seed's 3-block notification example opens (chunks 234, 234, 21)
SELECT withdraw._envelope_open('UoJC0VeVSvdOCYbkUIQxnJ2k-MINFmdfhHo1bpgK1kqcCKEZ1MtBFmvMnrZsmpQKVyNbFyBmLHzOk_T5FTxKA0VROneKR4wyK0G6HPQM6pDeSz2BPwwaw-2uiBSiPeQEwOabWl0MLyoJyj1g4VLcBgazCYeD5YPJXFOzjAEgkhfbMEcoS1to_ooISnIMeQvhj8g3I3m5k519eJ9KWOv5R3_EGMaI-yLlCB5CIVd4byjnBxDJxsRMR7yuEhIjfvsy49MgglSTrddCFu3ZHNwGlv_DzTJIMhJHRV7z4x8YQV2atP-BBgY9eozPa0JIkjBctdqigvzJs5nsbl76wL5Gv5-icGv4qtOF0w11t0oPi051Y7fiuPJ20BK6GAPEu_HroTvcWh-3vh2_U03Donv306HMvC-vXrQH18TGVqjtOlVhQW_wg4PF9fjMgNCsk3k57vzVfuRruurLv6-FD6HRvoUe4WfgSAi-jMRpuwXC8mL44r-dLDfo4wUdrjEk8tkjSZea8O066bJeVVUU3rD7qqL32Uf-3Bkcy26jsHLf-QK8oYi2xjddd2PSoHnpSIbRdDYrYLdO_zUFZudg4FBHFzQ6sSLesS_jA63xJZS1xk6EjejaSpID3r-7YXDQtM3y5O1TG3URmF5sVbWL5iekubN2jEjkQ2QdV4hz0sBdmlx8GrPUWSnbtLMV7zcxAhyodzIeWeeZCKeu1AF903YJvKZls8eKMEvd__PYSnnRtXVxNUvFFo-GL3sOtDAAhjKdLLSWCVGqDQsKSrORffejbDeHVGsmtFxPC5kvKHLbJvAW6QDzpG8hqmZLrtjxvTmcVMt1_hn9-VSi-qFW8xPorYmF5Hw1G5nZca7NK5k2Qs6xieNgw34Sps-tj38WxhXacRwlEp1Yt3Jj3BlMlxCD9VWxWO17Yvj3MmJTNgf-d22PvPV_mZrJaqjm6BSfuz9DVYVjsIuZF_eOgMaVTm31FFuFZvPF9G_lhC4CQ0Zb5KfpYx0NMJjGfBPtxZ3MsF8H', :'pub')::jsonb ->> 'side' AS side,
       octet_length(withdraw._envelope_open('UoJC0VeVSvdOCYbkUIQxnJ2k-MINFmdfhHo1bpgK1kqcCKEZ1MtBFmvMnrZsmpQKVyNbFyBmLHzOk_T5FTxKA0VROneKR4wyK0G6HPQM6pDeSz2BPwwaw-2uiBSiPeQEwOabWl0MLyoJyj1g4VLcBgazCYeD5YPJXFOzjAEgkhfbMEcoS1to_ooISnIMeQvhj8g3I3m5k519eJ9KWOv5R3_EGMaI-yLlCB5CIVd4byjnBxDJxsRMR7yuEhIjfvsy49MgglSTrddCFu3ZHNwGlv_DzTJIMhJHRV7z4x8YQV2atP-BBgY9eozPa0JIkjBctdqigvzJs5nsbl76wL5Gv5-icGv4qtOF0w11t0oPi051Y7fiuPJ20BK6GAPEu_HroTvcWh-3vh2_U03Donv306HMvC-vXrQH18TGVqjtOlVhQW_wg4PF9fjMgNCsk3k57vzVfuRruurLv6-FD6HRvoUe4WfgSAi-jMRpuwXC8mL44r-dLDfo4wUdrjEk8tkjSZea8O066bJeVVUU3rD7qqL32Uf-3Bkcy26jsHLf-QK8oYi2xjddd2PSoHnpSIbRdDYrYLdO_zUFZudg4FBHFzQ6sSLesS_jA63xJZS1xk6EjejaSpID3r-7YXDQtM3y5O1TG3URmF5sVbWL5iekubN2jEjkQ2QdV4hz0sBdmlx8GrPUWSnbtLMV7zcxAhyodzIeWeeZCKeu1AF903YJvKZls8eKMEvd__PYSnnRtXVxNUvFFo-GL3sOtDAAhjKdLLSWCVGqDQsKSrORffejbDeHVGsmtFxPC5kvKHLbJvAW6QDzpG8hqmZLrtjxvTmcVMt1_hn9-VSi-qFW8xPorYmF5Hw1G5nZca7NK5k2Qs6xieNgw34Sps-tj38WxhXacRwlEp1Yt3Jj3BlMlxCD9VWxWO17Yvj3MmJTNgf-d22PvPV_mZrJaqjm6BSfuz9DVYVjsIuZF_eOgMaVTm31FFuFZvPF9G_lhC4CQ0Zb5KfpYx0NMJjGfBPtxZ3MsF8H', :'pub')) AS plaintext_bytes;
-- case: round trip of multibyte text cut across blocks, the public key as PEM
SELECT withdraw._envelope_open(withdraw._envelope_seal(repeat('é€😀', 60), :'pri'), :'pri_pub')
       = repeat('é€😀', 60) AS round_trip;
-- case: the envelope of the request vector does not open with another key
SELECT withdraw._envelope_open('GCJBk77n7epyOexdGZ20qvukd321TpJ62lIAtlCinW6TzHx8SIbm6evXGulO87UgLTzIWCtgupgeLJKDdZmC7msuPNBGK--Ec27WZXjuhI0gNWXcOVk5RW_VRVcyfJ1Ml-DMW8XVxZRgA2U1bt9BztiyfryzMGj8_jl1IXd5sOQfPYXulCdm70WyTJpjsDkuMSov6QUmOn-C_-HUoZ7s715EMeZ60D09uUsF0i6mKLhFZTEQZPGPeJITYSJNddAw7nvqvX2KzNc6YUeCQhEmU1Dfxp65W4e3SVOgpd_2Q-dLN1MpOlkUKwbmbpb-gEh_s68yl7ox6WSgKfCK4i_uvA', :'other_pub');
-- case: the right key but one block altered
SELECT withdraw._envelope_open(overlay('GCJBk77n7epyOexdGZ20qvukd321TpJ62lIAtlCinW6TzHx8SIbm6evXGulO87UgLTzIWCtgupgeLJKDdZmC7msuPNBGK--Ec27WZXjuhI0gNWXcOVk5RW_VRVcyfJ1Ml-DMW8XVxZRgA2U1bt9BztiyfryzMGj8_jl1IXd5sOQfPYXulCdm70WyTJpjsDkuMSov6QUmOn-C_-HUoZ7s715EMeZ60D09uUsF0i6mKLhFZTEQZPGPeJITYSJNddAw7nvqvX2KzNc6YUeCQhEmU1Dfxp65W4e3SVOgpd_2Q-dLN1MpOlkUKwbmbpb-gEh_s68yl7ox6WSgKfCK4i_uvA' placing 'AAAA' from 100 for 4), :'pri_pub');
-- case: truncated envelope (not whole blocks)
SELECT withdraw._envelope_open(left('GCJBk77n7epyOexdGZ20qvukd321TpJ62lIAtlCinW6TzHx8SIbm6evXGulO87UgLTzIWCtgupgeLJKDdZmC7msuPNBGK--Ec27WZXjuhI0gNWXcOVk5RW_VRVcyfJ1Ml-DMW8XVxZRgA2U1bt9BztiyfryzMGj8_jl1IXd5sOQfPYXulCdm70WyTJpjsDkuMSov6QUmOn-C_-HUoZ7s715EMeZ60D09uUsF0i6mKLhFZTEQZPGPeJITYSJNddAw7nvqvX2KzNc6YUeCQhEmU1Dfxp65W4e3SVOgpd_2Q-dLN1MpOlkUKwbmbpb-gEh_s68yl7ox6WSgKfCK4i_uvA', 300), :'pri_pub');
-- case: not base64
SELECT withdraw._envelope_open('$$$not base64!!', :'pri_pub');
-- case: empty envelope
SELECT withdraw._envelope_open('', :'pri_pub');
-- case: a public key that is not a key
SELECT withdraw._envelope_open('GCJBk77n7epyOexdGZ20qvukd321TpJ62lIAtlCinW6TzHx8SIbm6evXGulO87UgLTzIWCtgupgeLJKDdZmC7msuPNBGK--Ec27WZXjuhI0gNWXcOVk5RW_VRVcyfJ1Ml-DMW8XVxZRgA2U1bt9BztiyfryzMGj8_jl1IXd5sOQfPYXulCdm70WyTJpjsDkuMSov6QUmOn-C_-HUoZ7s715EMeZ60D09uUsF0i6mKLhFZTEQZPGPeJITYSJNddAw7nvqvX2KzNc6YUeCQhEmU1Dfxp65W4e3SVOgpd_2Q-dLN1MpOlkUKwbmbpb-gEh_s68yl7ox6WSgKfCK4i_uvA', 'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA');
-- case: a 1024-bit key cannot seal 234-byte chunks
SELECT withdraw._envelope_seal('{}', :'small_pri');
-- case: an account with the demo keys (bare base64 DER, as the docs print them)
SELECT withdraw_account_create('chainup', 'chainup', 'http://127.0.0.1:9/chainup',
  jsonb_build_object('app_id', 'baaceb1e506e1b5d7d1f0a3b1622583b',
                     'merchant_private_key', :'pri', 'platform_public_key', :'pub'));
SELECT name, provider, credential_keys FROM withdraw.accounts WHERE provider = 'chainup';
-- case: keys that are not keys are refused at account creation, the key's text not echoed
SELECT withdraw_account_create('chainup_bad', 'chainup', 'http://127.0.0.1:9/chainup',
  '{"app_id": "a", "merchant_private_key": "bm90IGEga2V5", "platform_public_key": "x"}');
SELECT withdraw_account_create('chainup_bad', 'chainup', 'http://127.0.0.1:9/chainup',
  jsonb_build_object('app_id', 'a', 'merchant_private_key', :'pri', 'platform_public_key', :'pri'));
SELECT withdraw_account_create('chainup_bad', 'chainup', 'http://127.0.0.1:9/chainup',
  jsonb_build_object('app_id', 'a', 'merchant_private_key', :'small_pri', 'platform_public_key', :'pub'));
SELECT withdraw_account_create('chainup_bad', 'chainup', 'http://127.0.0.1:9/chainup',
  jsonb_build_object('merchant_private_key', :'pri', 'platform_public_key', :'pub'));
-- case: request validation, each error names the field
SELECT withdraw_create('chainup', '{"from_uid": "1", "to_address": "0xabc", "amount": "1.5"}');
SELECT withdraw_create('chainup', '{"from_uid": "1", "to_address": "0xabc", "amount": 1.5, "symbol": "usdt"}');
SELECT withdraw_create('chainup', '{"from_uid": "u1", "to_address": "0xabc", "amount": "1.5", "symbol": "usdt"}');
SELECT withdraw_create('chainup', '{"from_uid": -4, "to_address": "0xabc", "amount": "1.5", "symbol": "usdt"}');
SELECT withdraw_create('chainup', '{"request_id": "has space", "from_uid": "1", "to_address": "0xabc", "amount": "1.5", "symbol": "usdt"}');
SELECT withdraw_create('chainup', jsonb_build_object('request_id', repeat('r', 65), 'from_uid', '1',
  'to_address', '0xabc', 'amount', '1.5', 'symbol', 'usdt'));
SELECT withdraw_create('chainup', '{"from_uid": "1", "to_address": "0xabc", "amount": "0", "symbol": "usdt"}');
SELECT withdraw_create('chainup', '{"from_uid": "1", "to_address": "0xabc", "amount": "1", "symbol": "usdt", "fee": "1"}');
SELECT count(*) AS nothing_stored FROM withdraw.withdrawals WHERE provider = 'chainup';
-- case: a memo chain's address becomes address_memo; from_uid as a number is kept as digits
BEGIN;
SELECT withdraw_create('chainup', '{"request_id": "cu-1", "from_uid": 3529218, "to_address": "eos", "memo": "24545", "amount": "2.50", "symbol": "eos"}') > 0 AS created;
SELECT idempotency_key, request, asset, amount, destination, state FROM withdraw.withdrawals WHERE idempotency_key = 'cu-1';
ROLLBACK;
-- case: a callback body that is not authentic changes nothing and gets FAILURE
SELECT withdraw_callback('chainup', 'app_id=baaceb1e506e1b5d7d1f0a3b1622583b&data=GCJBk77n7epyOexdGZ20qvukd321TpJ62lIAtlCinW6TzHx8SIbm6evXGulO87UgLTzIWCtgupgeLJKDdZmC7msuPNBGK--Ec27WZXjuhI0gNWXcOVk5RW_VRVcyfJ1Ml-DMW8XVxZRgA2U1bt9BztiyfryzMGj8_jl1IXd5sOQfPYXulCdm70WyTJpjsDkuMSov6QUmOn-C_-HUoZ7s715EMeZ60D09uUsF0i6mKLhFZTEQZPGPeJITYSJNddAw7nvqvX2KzNc6YUeCQhEmU1Dfxp65W4e3SVOgpd_2Q-dLN1MpOlkUKwbmbpb-gEh_s68yl7ox6WSgKfCK4i_uvA');
SELECT withdraw_callback('chainup', 'no form at all');
SELECT withdraw_confirm('chainup', 'app_id=x&data=' || withdraw._envelope_seal('{"check_sum":"1"}', :'pri'));
SELECT kind, verdict, withdrawal_id, content, detail FROM withdraw.callbacks ORDER BY id;
-- case: the seed's notification example is a deposit: an authentic envelope of the wallet key
-- (here pub opens it, so the account must be set to pub as its platform key: it is) and is recorded apart
SELECT withdraw_callback('chainup', 'app_id=baaceb1e506e1b5d7d1f0a3b1622583b&data=UoJC0VeVSvdOCYbkUIQxnJ2k-MINFmdfhHo1bpgK1kqcCKEZ1MtBFmvMnrZsmpQKVyNbFyBmLHzOk_T5FTxKA0VROneKR4wyK0G6HPQM6pDeSz2BPwwaw-2uiBSiPeQEwOabWl0MLyoJyj1g4VLcBgazCYeD5YPJXFOzjAEgkhfbMEcoS1to_ooISnIMeQvhj8g3I3m5k519eJ9KWOv5R3_EGMaI-yLlCB5CIVd4byjnBxDJxsRMR7yuEhIjfvsy49MgglSTrddCFu3ZHNwGlv_DzTJIMhJHRV7z4x8YQV2atP-BBgY9eozPa0JIkjBctdqigvzJs5nsbl76wL5Gv5-icGv4qtOF0w11t0oPi051Y7fiuPJ20BK6GAPEu_HroTvcWh-3vh2_U03Donv306HMvC-vXrQH18TGVqjtOlVhQW_wg4PF9fjMgNCsk3k57vzVfuRruurLv6-FD6HRvoUe4WfgSAi-jMRpuwXC8mL44r-dLDfo4wUdrjEk8tkjSZea8O066bJeVVUU3rD7qqL32Uf-3Bkcy26jsHLf-QK8oYi2xjddd2PSoHnpSIbRdDYrYLdO_zUFZudg4FBHFzQ6sSLesS_jA63xJZS1xk6EjejaSpID3r-7YXDQtM3y5O1TG3URmF5sVbWL5iekubN2jEjkQ2QdV4hz0sBdmlx8GrPUWSnbtLMV7zcxAhyodzIeWeeZCKeu1AF903YJvKZls8eKMEvd__PYSnnRtXVxNUvFFo-GL3sOtDAAhjKdLLSWCVGqDQsKSrORffejbDeHVGsmtFxPC5kvKHLbJvAW6QDzpG8hqmZLrtjxvTmcVMt1_hn9-VSi-qFW8xPorYmF5Hw1G5nZca7NK5k2Qs6xieNgw34Sps-tj38WxhXacRwlEp1Yt3Jj3BlMlxCD9VWxWO17Yvj3MmJTNgf-d22PvPV_mZrJaqjm6BSfuz9DVYVjsIuZF_eOgMaVTm31FFuFZvPF9G_lhC4CQ0Zb5KfpYx0NMJjGfBPtxZ3MsF8H');
SELECT kind, verdict, withdrawal_id, content->>'side' AS side, content->>'symbol' AS symbol
FROM withdraw.callbacks WHERE verdict <> 'rejected' ORDER BY id;
-- case: a form value that ends in '%' and one hex digit is read no further than the body:
-- the body is a column of a stored row, so the byte after it is the next column's length
-- byte, here '1' (23 bytes of text); read as '%41', 'QUF%4' would decode to 'QUFA', 3 bytes
CREATE TABLE pg_temp.bodies (body text, next_column text);
INSERT INTO pg_temp.bodies VALUES ('app_id=baaceb1e506e1b5d7d1f0a3b1622583b&data=QUF%4', repeat('x', 23));
SELECT withdraw_callback('chainup', body) FROM pg_temp.bodies;
SELECT verdict, detail FROM withdraw.callbacks ORDER BY id DESC LIMIT 1;
-- case: withdraw_sync bounds are Unix seconds a timestamp can hold (19 digits overflowed)
SELECT withdraw_sync('chainup', '{"start": 9223372036854775807}');
SELECT withdraw_sync('chainup', '{"end": -1}');
-- case: the platform's envelopes are bound to one message.  An account whose platform key
-- is the demo pair's public half, so that this test can seal as the platform does
SELECT withdraw_account_create('chainup_splice', 'chainup', 'http://127.0.0.1:9/chainup',
  jsonb_build_object('app_id', 'app-splice', 'merchant_private_key', :'pri', 'platform_public_key', :'pri_pub'));
CREATE FUNCTION pg_temp.raw(t text) RETURNS bytea LANGUAGE sql
  AS $$ SELECT decode(rpad(translate(t, '-_', '+/'), (length(t) + 3) / 4 * 4, '='), 'base64') $$;
CREATE FUNCTION pg_temp.b64u(b bytea) RETURNS text LANGUAGE sql
  AS $$ SELECT rtrim(translate(replace(encode(b, 'base64'), E'\n', ''), '+/', '-_'), '=') $$;
-- two authentic notifications of two blocks each (234 + 158 and 234 + 98 bytes); the block
-- boundary falls inside "pad" in both, so A's first block and B's second make valid JSON
SELECT withdraw._envelope_seal('{"side":"withdraw","notify_time":"1","request_id":"splice-a","id":"1","status":"1","pad":"'
         || repeat('a', 300) || '"}', :'pri') AS env_a,
       withdraw._envelope_seal('{"pad":"' || repeat('b', 240)
         || '","side":"withdraw","notify_time":"2","request_id":"splice-b","id":"2","status":"4"}', :'pri') AS env_b \gset
SELECT withdraw_callback('chainup_splice', 'app_id=app-splice&data=' || :'env_a') AS a_alone,
       withdraw_callback('chainup_splice', 'app_id=app-splice&data=' || :'env_b') AS b_alone;
-- A's first block, B's second: every block authentic, but the text names side, notify_time,
-- request_id, id and status twice (jsonb would keep B's): not one message, refused
SELECT withdraw_callback('chainup_splice', 'app_id=app-splice&data=' ||
  pg_temp.b64u(substring(pg_temp.raw(:'env_a') from 1 for 256) || substring(pg_temp.raw(:'env_b') from 257)))
  AS spliced;
-- B's last block first: a block shorter than a chunk ends a message, it cannot be followed
SELECT withdraw._envelope_open(pg_temp.b64u(substring(pg_temp.raw(:'env_b') from 257)
                                            || substring(pg_temp.raw(:'env_a') from 257)), :'pri_pub');
SELECT withdraw_callback('chainup_splice', 'app_id=app-splice&data=' ||
  pg_temp.b64u(substring(pg_temp.raw(:'env_b') from 257) || substring(pg_temp.raw(:'env_a') from 257)))
  AS short_block_first;
-- a full first block, then a middle block shorter than it
SELECT withdraw._envelope_open(pg_temp.b64u(substring(pg_temp.raw(:'env_a') from 1 for 256)
  || substring(pg_temp.raw(:'env_b') from 257) || substring(pg_temp.raw(:'env_a') from 257)), :'pri_pub');
SELECT verdict, idempotency_key, detail FROM withdraw.callbacks WHERE account = 'chainup_splice' ORDER BY id;
SELECT withdraw_account_drop('chainup_splice');
-- case: notify_window_ms (the notifications' freshness window) is bounded
SELECT withdraw_account_update('chainup', options => '{"notify_window_ms": 0}');
SELECT withdraw_account_update('chainup', options => '{"notify_window_ms": 3600000}');
SELECT options FROM withdraw.accounts WHERE name = 'chainup';
-- case: callbacks of a provider that makes none
SELECT withdraw_callback('zoomex', '{}');
-- case: callbacks are for the webhook role; withdraw_user cannot call them, nor the vector functions
SET ROLE withdraw_user;
SELECT withdraw_callback('chainup', 'x');
SELECT withdraw._envelope_open('x', 'y');
RESET ROLE;
SELECT withdraw_account_drop('chainup');
